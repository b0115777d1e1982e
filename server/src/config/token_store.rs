//! `[token_store]`: where token records live (memory with its log, or
//! Redis).

use super::raw::{RawTokenStore, StoreKind};
use super::{ConfigError, TokenStoreConfig, DEFAULT_SYNC_INTERVAL_MS};
use crate::source::Locator;
use crate::store::RedisConfig;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

pub(super) fn parse(loc: &Locator<'_>, dir: &Path, raw: RawTokenStore) -> Result<TokenStoreConfig, ConfigError> {
    let kind_span = raw.kind.as_ref().map_or(0..0, Spanned::span);
    match raw.kind.as_ref().map_or(StoreKind::Memory, |k| *k.get_ref()) {
        StoreKind::Memory => {
            if let Some(url) = &raw.url {
                return Err(loc.at(url.span(), "token_store.url", "only used with kind = \"redis\""));
            }
            if let Some(node) = raw.cluster_nodes.first() {
                return Err(loc.at(node.span(), "token_store.cluster_nodes", "only used with kind = \"redis\""));
            }
            let wal = raw.durable.unwrap_or(true).then(|| dir.join(raw.file.as_deref().unwrap_or("ropc-tokens.wal")));
            let sync_interval_ms = match &raw.sync_interval_ms {
                None => DEFAULT_SYNC_INTERVAL_MS,
                Some(v) if *v.get_ref() <= 10_000 => *v.get_ref(),
                Some(v) => {
                    return Err(loc.at(
                        v.span(),
                        "token_store.sync_interval_ms",
                        "must be at most 10000 (0: sync before answering)",
                    ))
                }
            };
            Ok(TokenStoreConfig::Memory { wal, sync_interval_ms })
        }
        StoreKind::Redis => {
            if raw.durable.is_some() || raw.file.is_some() || raw.sync_interval_ms.is_some() {
                return Err(loc.at(
                    kind_span.clone(),
                    "token_store.durable",
                    "durable, file and sync_interval_ms are for kind = \"memory\"; Redis keeps its own persistence (RDB/AOF)",
                ));
            }
            let cluster = !raw.cluster_nodes.is_empty();
            let nodes: Vec<&Spanned<String>> = match (&raw.url, cluster) {
                (Some(url), false) => vec![url],
                (None, true) => raw.cluster_nodes.iter().collect(),
                (Some(url), true) => {
                    return Err(loc.at(url.span(), "token_store.url", "set url (one node) or cluster_nodes, not both"))
                }
                (None, false) => {
                    return Err(loc.at(
                        kind_span.clone(),
                        "token_store.url",
                        "kind = \"redis\" needs url = \"redis://host:6379\" (or cluster_nodes)",
                    ))
                }
            };
            for node in &nodes {
                let key = if cluster { "token_store.cluster_nodes" } else { "token_store.url" };
                if let Err(e) = redis::Client::open(node.get_ref().as_str()) {
                    return Err(loc.at(node.span(), key, format!("not a Redis URL: {e}")));
                }
            }
            let prefix = raw.prefix.as_ref().map_or("ropc:", |p| p.get_ref().as_str()).to_owned();
            let ms = |v: &Option<Spanned<u64>>, key: &str, default: u64| match v {
                None => Ok(Duration::from_millis(default)),
                Some(v) if (1..=60_000).contains(v.get_ref()) => Ok(Duration::from_millis(*v.get_ref())),
                Some(v) => Err(loc.at(v.span(), key, "must be between 1 and 60000 milliseconds")),
            };
            Ok(TokenStoreConfig::Redis(RedisConfig {
                nodes: nodes.iter().map(|n| n.get_ref().clone()).collect(),
                cluster,
                prefix,
                connect_timeout: ms(&raw.connect_timeout_ms, "token_store.connect_timeout_ms", 500)?,
                command_timeout: ms(&raw.command_timeout_ms, "token_store.command_timeout_ms", 250)?,
            }))
        }
    }
}
