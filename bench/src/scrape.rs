//! Scraping as Prometheus does, one scrape after the other over one keep-alive connection, timing each from
//! sending the request to the last byte of the body.

use std::time::{Duration, Instant};

use crate::{Context, Result};

pub struct Scraper {
    client: reqwest::Client,
    url: String,
}

/// What a series of scrapes measured.
pub struct Scrapes {
    /// Scrapes made (fewer than asked when the time limit was reached).
    pub scrapes: usize,
    /// Scrapes that did not answer 200.
    pub failures: usize,
    /// Whether the first and last answers held every worker (one `kobo_worker_enabled` sample each) and no
    /// `kobo_up 0`.
    pub up: bool,
    /// The last answer's size.
    pub body_bytes: usize,
    /// Sorted.
    latencies: Vec<Duration>,
}

impl Scrapes {
    /// The `p`th percentile (nearest rank), milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies.len()) - 1;
        self.latencies[index].as_secs_f64() * 1000.0
    }

    pub fn mean_ms(&self) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let total: Duration = self.latencies.iter().sum();
        total.as_secs_f64() * 1000.0 / self.latencies.len() as f64
    }
}

impl Scraper {
    pub fn new(url: String) -> Result<Scraper> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(Scraper { client, url })
    }

    /// `n` scrapes, or as many as fit in `limit`, of a hub with `workers` workers.
    pub async fn run(&self, n: usize, limit: Duration, workers: usize) -> Result<Scrapes> {
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(n);
        let mut failures = 0;
        let mut up = true;
        let mut body_bytes = 0;
        for i in 0..n {
            if started.elapsed() > limit {
                eprintln!("   time limit: {i} of {n} scrapes in {} s", limit.as_secs());
                break;
            }
            let sent = Instant::now();
            let response = self
                .client
                .get(&self.url)
                .send()
                .await
                .context(format!("scraping {}", self.url))?;
            let ok = response.status().is_success();
            let body = response.bytes().await.context("reading the scrape")?;
            latencies.push(sent.elapsed());
            if !ok {
                failures += 1;
            }
            if i == 0 || i + 1 == n {
                up &= ok && complete(&body, workers);
            }
            body_bytes = body.len();
        }
        latencies.sort();
        Ok(Scrapes {
            scrapes: latencies.len(),
            failures,
            up,
            body_bytes,
            latencies,
        })
    }
}

/// Whether an exposition holds `workers` workers and no failed collection.
fn complete(body: &[u8], workers: usize) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    text.matches("\nkobo_worker_enabled{").count() == workers && !text.contains("\nkobo_up 0")
}

#[cfg(test)]
mod tests {
    use super::complete;

    #[test]
    fn an_exposition_is_complete_with_every_worker_and_no_failure() {
        let two = "# TYPE kobo_worker_enabled gauge\nkobo_worker_enabled{worker=\"a\"} 1\nkobo_worker_enabled{worker=\"b\"} 0\nkobo_up 1\n";
        assert!(complete(two.as_bytes(), 2));
        assert!(!complete(two.as_bytes(), 3));
        assert!(!complete(
            two.replace("kobo_up 1", "kobo_up 0").as_bytes(),
            2
        ));
        assert!(!complete(b"\xff", 0));
    }
}
