//! The hubs one exporter serves: the `kobo` table's own (on `/metrics`) and the named ones of
//! `kobo.hubs.<name>` (on `/probe?target=<name>`), each with a collector of its own (source, connection
//! pool, single flight, task cache, back-off, `kobo_up`), so that a slow or dead hub never holds up
//! another.
//!
//! The set is replaced whole on a reload ([`Hubs::replace`]); a scrape holds the [`Arc`] of the hub it
//! started on, so a hub swapped out finishes the scrapes in flight, and its source (with its connections)
//! is dropped with the last of them.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::collector::HubCollector;
use crate::config::{ConfigError, ExporterConfig, Settings};
use crate::source;

/// One hub and its collector.
pub struct Hub {
    /// `None` for the `kobo` table's own hub.
    pub name: Option<String>,
    pub collector: HubCollector,
    /// [`Settings::identity`]: equal identities are the same hub (a reload keeps it).
    identity: u64,
}

impl Hub {
    /// The hub for these settings; its source is opened (a network source does no I/O yet).
    pub fn open(settings: &Settings) -> Result<Hub, ConfigError> {
        let source = source::open(settings)?;
        let options = settings.collector.clone();
        let collector = match &settings.hub {
            None => HubCollector::new(source, options),
            Some(name) => HubCollector::for_probe(source, options, name),
        };
        Ok(Hub {
            name: settings.hub.clone(),
            collector,
            identity: settings.identity,
        })
    }
}

/// How messages name a hub: by its name, the `kobo` table's own as `(kobo table)`.
pub fn label(name: Option<&str>) -> &str {
    name.unwrap_or("(kobo table)")
}

/// The names of the named hubs, for messages: `a, b`, or `none`.
pub fn name_list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// What a reload did to the hubs, by name (the `kobo` table's own as `(kobo table)`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub kept: Vec<String>,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (what, names) in [
            ("added", &self.added),
            ("changed", &self.changed),
            ("removed", &self.removed),
            ("unchanged", &self.kept),
        ] {
            if !names.is_empty() {
                parts.push(format!("{what}: {}", names.join(", ")));
            }
        }
        if parts.is_empty() {
            f.write_str("no hubs")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// The hubs of one configuration.
#[derive(Default)]
pub struct HubSet {
    /// The `kobo` table's own hub, if it has one.
    pub default: Option<Arc<Hub>>,
    /// The named hubs, by name.
    pub named: BTreeMap<String, Arc<Hub>>,
}

impl HubSet {
    /// A set of one hub, the `kobo` table's.
    pub fn single(collector: HubCollector) -> HubSet {
        HubSet {
            default: Some(Arc::new(Hub {
                name: None,
                collector,
                identity: 0,
            })),
            named: BTreeMap::new(),
        }
    }

    /// The hubs of `config`. A hub of `previous` with the same name and identity is kept as it is (its
    /// connections and caches); the others are opened. All or nothing: an error opens none.
    pub fn open(
        config: &ExporterConfig,
        previous: Option<&HubSet>,
    ) -> Result<(HubSet, Changes), ConfigError> {
        let mut changes = Changes::default();
        let mut open =
            |settings: &Settings, old: Option<&Arc<Hub>>| -> Result<Arc<Hub>, ConfigError> {
                let label = label(settings.hub.as_deref()).to_string();
                match old {
                    Some(old) if old.identity == settings.identity => {
                        changes.kept.push(label);
                        Ok(Arc::clone(old))
                    }
                    Some(_) => {
                        let hub = Hub::open(settings)?;
                        changes.changed.push(label);
                        Ok(Arc::new(hub))
                    }
                    None => {
                        let hub = Hub::open(settings)?;
                        if previous.is_some() {
                            changes.added.push(label);
                        }
                        Ok(Arc::new(hub))
                    }
                }
            };
        let default = match &config.default {
            Some(settings) => Some(open(settings, previous.and_then(|p| p.default.as_ref()))?),
            None => None,
        };
        let mut named = BTreeMap::new();
        for (name, settings) in &config.hubs {
            let old = previous.and_then(|p| p.named.get(name));
            named.insert(name.clone(), open(settings, old)?);
        }
        if let Some(previous) = previous {
            if previous.default.is_some() && default.is_none() {
                changes.removed.push(label(None).into());
            }
            changes.removed.extend(
                previous
                    .named
                    .keys()
                    .filter(|name| !named.contains_key(*name))
                    .cloned(),
            );
        }
        Ok((HubSet { default, named }, changes))
    }

    /// Every hub: the `kobo` table's first, then the named ones by name.
    pub fn every(&self) -> impl Iterator<Item = &Arc<Hub>> {
        self.default.iter().chain(self.named.values())
    }

    /// The named hubs' names, for messages.
    pub fn names(&self) -> String {
        name_list(self.named.keys())
    }
}

/// The hubs being served: a [`HubSet`] replaced whole on a reload.
pub struct Hubs {
    current: RwLock<Arc<HubSet>>,
}

impl Hubs {
    pub fn new(set: HubSet) -> Hubs {
        Hubs {
            current: RwLock::new(Arc::new(set)),
        }
    }

    /// The set now; a scrape keeps it (or the one hub it serves) for as long as it runs.
    pub fn current(&self) -> Arc<HubSet> {
        // A set is replaced whole, never changed in place: one left by a panic is still whole.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Serves `set` from now on; gives the set it replaces.
    pub fn replace(&self, set: HubSet) -> Arc<HubSet> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *current, Arc::new(set))
    }
}
