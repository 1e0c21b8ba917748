//! Gzip for the metrics answers: `Accept-Encoding` negotiation and the compression itself (flate2).

use std::io::Write as _;

use flate2::Compression;
use flate2::write::GzEncoder;

/// Whether an `Accept-Encoding` header accepts gzip: `gzip` (or `x-gzip`, or `*` when gzip is not
/// named) with a q-value above 0.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(header) = accept_encoding else {
        return false;
    };
    let mut wildcard = false;
    for coding in crate::negotiation::preferences(header) {
        if coding.is("gzip") || coding.is("x-gzip") {
            return coding.q > 0.0;
        }
        if coding.is("*") {
            wildcard = coding.q > 0.0;
        }
    }
    wildcard
}

/// The level the answers are gzipped at, the fastest: the text compresses about fourteenfold even so
/// (1,000 workers: 980 KB to 68 KB, against 54 KB at level 6, which takes 9 times as long; the levels are
/// weighed in `benches/render.rs`).
pub const LEVEL: u32 = 1;

/// The gzip-compressed bytes at [`LEVEL`].
pub fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    gzip_pieces([body], body.len(), LEVEL)
}

/// The gzip-compressed bytes of the concatenation of `pieces` (`len` bytes in all) at `level` (0 to 9),
/// without making the concatenation.
pub fn gzip_pieces<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
    len: usize,
    level: u32,
) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(len / 8), Compression::new(level));
    for piece in pieces {
        encoder.write_all(piece)?;
    }
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, GZIP;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0, *")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(Some("br;q=1, *;q=0")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn round_trip() {
        use std::io::Read as _;
        let text = "kobo_up 1\n".repeat(100);
        let packed = gzip(text.as_bytes()).expect("gzip");
        assert!(packed.len() < text.len());
        let mut unpacked = String::new();
        flate2::read::GzDecoder::new(packed.as_slice())
            .read_to_string(&mut unpacked)
            .expect("gunzip");
        assert_eq!(unpacked, text);
    }
}
