//! `R/config.toml`: the node's settings. Every key is optional; a missing file means the
//! defaults. No public bootstrap peers are compiled in: a node knows the peers its owner lists,
//! the ones mDNS finds on the local network, and the ones those tell it about.
//!
//! ```toml
//! listen = ["/ip4/0.0.0.0/tcp/4011", "/ip4/0.0.0.0/udp/4011/quic-v1"]   # where peers reach us
//! bootstrap = ["/ip4/192.0.2.7/tcp/4001/p2p/12D3Koo..."]
//! mdns = true                          # find peers on the local network
//! dht = true                           # Kademlia on /ipfs/kad/1.0.0 and /ipfs/lan/kad/1.0.0
//! fetch_timeout = 30                   # seconds a read waits for a missing block, then EIO
//! provide = "roots"                    # announce pinned roots ("all": every block; "none")
//! serve = true                         # send blocks to peers that want them
//! upload_limit = "10M"                 # bytes per second for serving (K, M, G); 0 = no limit
//! incentives = true                    # under the limit, who gave us most is served first
//! skeleton_nodes = 65536               # a tree's listings fetched on entry, up to this many blocks
//! skeleton_bytes = "64M"               # and this many bytes (0 nodes: fetched as read)
//!
//! [names]
//! refresh = 300                        # seconds a resolved name is trusted before asking again
//!                                      # (at most: a record's own TTL may be shorter)
//! republish = 14400                    # seconds between re-puts of followed names (0: never)
//! follow_per_user = 256                # names one local user may have this node follow
//! ```

use std::{path::Path, time::Duration};

use libp2p::Multiaddr;
use serde::Deserialize;

/// What to announce on the DHT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Provide {
    None,
    /// The roots of pinned DAGs.
    #[default]
    Roots,
    /// Every block in the store.
    All,
}

/// The node's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    pub dht: bool,
    pub fetch_timeout: Duration,
    pub provide: Provide,
    pub serve: bool,
    /// Bytes per second for serving blocks; `None` for no limit.
    pub upload_limit: Option<u64>,
    /// Serve in order of generosity under the upload limit, and ask the best deliverers
    /// first ([`crate::incentives`]); off, everyone is treated alike.
    pub incentives: bool,
    /// The bounds of a tree's skeleton, fetched when a reader enters it
    /// ([`crate::skeleton`]); `nodes` 0 turns skeletons off.
    pub skeleton_nodes: u64,
    pub skeleton_bytes: u64,
    /// `[names]`: how names are cached, followed and republished.
    pub names: NamesConfig,
}

/// `[names]`: the daemon's names (`docs/names.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesConfig {
    /// How long a resolved name is used before the network is asked again (less if its
    /// record's TTL is shorter).
    pub refresh: Duration,
    /// How often followed names' records are put on the DHT again, and this node's user's
    /// own names re-signed; `None`: never.
    pub republish: Option<Duration>,
    /// How many names one local user may have the node follow.
    pub follow_per_user: usize,
}

impl Default for NamesConfig {
    fn default() -> Self {
        NamesConfig {
            refresh: Duration::from_secs(300),
            republish: Some(Duration::from_secs(4 * 3600)),
            follow_per_user: 256,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamesFile {
    refresh: Option<f64>,
    republish: Option<f64>,
    follow_per_user: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4011".parse().expect("valid"),
                "/ip4/0.0.0.0/udp/4011/quic-v1".parse().expect("valid"),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            dht: true,
            fetch_timeout: Duration::from_secs(30),
            provide: Provide::Roots,
            serve: true,
            upload_limit: None,
            incentives: true,
            skeleton_nodes: crate::skeleton::SkeletonLimits::default().nodes,
            skeleton_bytes: crate::skeleton::SkeletonLimits::default().bytes,
            names: NamesConfig::default(),
        }
    }
}

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: {what}")]
    Value { path: String, what: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<Vec<String>>,
    bootstrap: Option<Vec<String>>,
    mdns: Option<bool>,
    dht: Option<bool>,
    fetch_timeout: Option<f64>,
    provide: Option<Provide>,
    serve: Option<bool>,
    upload_limit: Option<toml::Value>,
    incentives: Option<bool>,
    skeleton_nodes: Option<u64>,
    skeleton_bytes: Option<toml::Value>,
    names: Option<NamesFile>,
}

impl Config {
    /// Reads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Io {
                    path: shown,
                    source,
                })
            }
        };
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Toml { source, .. } => ConfigError::Toml {
                path: shown,
                source,
            },
            ConfigError::Value { what, .. } => ConfigError::Value { path: shown, what },
            other => other,
        })
    }

    /// Parses the text of a config file.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let f: File = toml::from_str(text).map_err(|source| ConfigError::Toml {
            path: String::new(),
            source,
        })?;
        let bad = |what: String| ConfigError::Value {
            path: String::new(),
            what,
        };
        let addrs = |v: Vec<String>, key: &str| -> Result<Vec<Multiaddr>, ConfigError> {
            v.iter()
                .map(|s| {
                    s.parse()
                        .map_err(|e| bad(format!("{key}: {s:?} is not a multiaddr ({e})")))
                })
                .collect()
        };
        let mut c = Config::default();
        if let Some(v) = f.listen {
            c.listen = addrs(v, "listen")?;
        }
        if let Some(v) = f.bootstrap {
            c.bootstrap = addrs(v, "bootstrap")?;
        }
        c.mdns = f.mdns.unwrap_or(c.mdns);
        c.dht = f.dht.unwrap_or(c.dht);
        if let Some(t) = f.fetch_timeout {
            if !(t > 0.0 && t <= 86400.0) {
                return Err(bad(format!(
                    "fetch_timeout {t} is not in (0, 86400] seconds"
                )));
            }
            c.fetch_timeout = Duration::from_secs_f64(t);
        }
        c.provide = f.provide.unwrap_or(c.provide);
        c.serve = f.serve.unwrap_or(c.serve);
        c.incentives = f.incentives.unwrap_or(c.incentives);
        c.upload_limit = match f.upload_limit {
            None => None,
            Some(toml::Value::Integer(0)) => None,
            Some(toml::Value::Integer(n)) if n > 0 => Some(n as u64),
            Some(toml::Value::String(s)) => parse_rate(&s).map_err(bad)?,
            Some(other) => return Err(bad(format!("upload_limit {other} is not a rate"))),
        };
        c.skeleton_nodes = f.skeleton_nodes.unwrap_or(c.skeleton_nodes);
        c.skeleton_bytes = match f.skeleton_bytes {
            None => c.skeleton_bytes,
            Some(toml::Value::Integer(n)) if n >= 0 => n as u64,
            Some(toml::Value::String(s)) => parse_rate(&s)
                .map_err(|_| bad(format!("skeleton_bytes {s:?} is not a size like 64M")))?
                .unwrap_or(0),
            Some(other) => return Err(bad(format!("skeleton_bytes {other} is not a size"))),
        };
        if let Some(n) = f.names {
            let secs = |v: f64, key: &str| {
                if v.is_finite() && (0.0..=365.0 * 86400.0).contains(&v) {
                    Ok(Duration::from_secs_f64(v))
                } else {
                    Err(bad(format!(
                        "names.{key} {v} is not in [0, one year] seconds"
                    )))
                }
            };
            if let Some(v) = n.refresh {
                c.names.refresh = secs(v, "refresh")?;
            }
            if let Some(v) = n.republish {
                c.names.republish = Some(secs(v, "republish")?).filter(|d| !d.is_zero());
            }
            if let Some(v) = n.follow_per_user {
                c.names.follow_per_user = v;
            }
        }
        Ok(c)
    }

    /// How far a skeleton walk may go under these settings.
    pub fn skeleton_limits(&self) -> crate::skeleton::SkeletonLimits {
        crate::skeleton::SkeletonLimits {
            nodes: self.skeleton_nodes,
            bytes: self.skeleton_bytes,
            timeout: self.fetch_timeout,
            ..Default::default()
        }
    }
}

/// "10M", "512K", "1G", "2500000" (bytes per second); "0" for no limit.
pub fn parse_rate(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("upload_limit {s:?} is not a rate like 10M"))?;
    if !(n >= 0.0 && n.is_finite()) {
        return Err(format!("upload_limit {s:?} is negative"));
    }
    let v = (n * mult as f64) as u64;
    Ok((v > 0).then_some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_key() {
        let c = Config::parse("").unwrap();
        assert!(c.bootstrap.is_empty() && c.mdns && c.serve && c.upload_limit.is_none());
        let c = Config::parse(
            r#"listen = ["/ip4/127.0.0.1/tcp/0"]
               bootstrap = ["/ip4/127.0.0.1/tcp/4001"]
               mdns = false
               dht = false
               fetch_timeout = 2.5
               provide = "all"
               serve = false
               upload_limit = "1.5M"
               skeleton_nodes = 10
               skeleton_bytes = "1K"
               [names]
               refresh = 1
               republish = 0
               follow_per_user = 3"#,
        )
        .unwrap();
        assert_eq!(c.listen[0].to_string(), "/ip4/127.0.0.1/tcp/0");
        assert_eq!(c.fetch_timeout, Duration::from_millis(2500));
        assert_eq!(c.provide, Provide::All);
        assert_eq!(c.upload_limit, Some(1_572_864));
        assert!(!c.mdns && !c.dht && !c.serve);
        assert_eq!((c.skeleton_nodes, c.skeleton_bytes), (10, 1024));
        assert_eq!(
            c.names,
            NamesConfig {
                refresh: Duration::from_secs(1),
                republish: None,
                follow_per_user: 3
            }
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (text, says) in [
            ("listen = [\"nonsense\"]", "listen"),
            ("fetch_timeout = -1", "fetch_timeout"),
            ("upload_limit = \"fast\"", "upload_limit"),
            ("colour = \"blue\"", "colour"),
            ("provide = \"some\"", "provide"),
            ("skeleton_bytes = \"big\"", "skeleton_bytes"),
            ("[names]\nrefresh = -1", "names.refresh"),
            ("[names]\ncolour = 1", "colour"),
        ] {
            let e = Config::parse(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
