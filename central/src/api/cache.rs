//! The read cache for hot reads (inspection detail, vehicle history): Redis
//! when `[api.cache] redis_url` is set, an in-process map otherwise.
//!
//! ```text
//! DESIGN
//!
//! Entries are Redis hashes: the key names what a write invalidates
//! (`insp:{id}`, `veh:{plate}`), the field the variant (a page, a scope),
//! so one DEL drops every variant. A hash expires `ttl` after its first
//! field was written (EXPIRE ... NX), so nothing lives longer than that.
//!
//! A READ NEVER REFILLS WHAT A WRITE INVALIDATED
//!
//! Each key has a generation (`{key}:gen`), bumped by every invalidation.
//! A miss returns the generation it saw (a `Ticket`); the value read from
//! the store is stored only if the generation is unchanged (one Lua script,
//! atomic in Redis). Without it a read that began before a write and
//! finished after its invalidation would cache the old state (after a GDPR
//! erasure: the plate) for a whole TTL.
//!
//! A REDIS OUTAGE NEVER FAILS A REQUEST
//!
//! Every Redis call has a short time limit; an error or timeout counts in
//! `central_api_cache_errors_total{op}`, opens a breaker for a second (the
//! next requests skip Redis instead of each waiting for the time limit),
//! and the request is answered from the store. An invalidation that fails
//! is kept in `pending`: while a key is pending it is never read from the
//! cache, and the pending deletes are retried before the next cache call,
//! so a Redis that comes back with old data (a restart from its snapshot)
//! cannot serve what a write made stale.
//!
//! WHAT GOES STALE
//!
//! Staff writes through this API invalidate at once. Writes by other roles
//! (a worker reprocessing an inspection before anyone reviewed it, a new
//! inspection of a vehicle) are seen within the TTL: 300 s for details
//! (cached only once processing has finished), 30 s for vehicle histories.
//! With Redis down and configured, nothing is cached in-process: other
//! replicas could not invalidate it.
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;

/// `[api.cache]`. Its `Debug` masks the password of `redis_url`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `redis://host:6379/0`; without it the cache is in-process.
    pub redis_url: Option<String>,
    /// Inspection details (cached once processing has finished).
    pub detail_ttl_seconds: u64,
    /// Vehicle histories.
    pub history_ttl_seconds: u64,
    /// In-process cache size, in entries.
    pub memory_entries: usize,
    /// Longest a Redis call may take before the store answers instead.
    pub timeout_ms: u64,
}

impl std::fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured: a new field cannot be left out.
        let CacheConfig {
            redis_url,
            detail_ttl_seconds,
            history_ttl_seconds,
            memory_entries,
            timeout_ms,
        } = self;
        f.debug_struct("CacheConfig")
            .field(
                "redis_url",
                &redis_url
                    .as_deref()
                    .map(inspection_core::config::redact_url),
            )
            .field("detail_ttl_seconds", detail_ttl_seconds)
            .field("history_ttl_seconds", history_ttl_seconds)
            .field("memory_entries", memory_entries)
            .field("timeout_ms", timeout_ms)
            .finish()
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            redis_url: None,
            detail_ttl_seconds: 300,
            history_ttl_seconds: 30,
            memory_entries: 10_000,
            timeout_ms: 250,
        }
    }
}

impl CacheConfig {
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("unix://"))
        {
            out.push(format!("{at}.redis_url: expected redis://host:port/db"));
        }
        if self.detail_ttl_seconds == 0 || self.history_ttl_seconds == 0 {
            out.push(format!("{at}: TTLs of at least 1 s"));
        }
        if !(10..=5000).contains(&self.timeout_ms) {
            out.push(format!("{at}.timeout_ms: 10 to 5000"));
        }
        out
    }
}

/// Which read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Detail,
    History,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Detail => "detail",
            Kind::History => "history",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    cache: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

/// The cache's metrics; clones share values.
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    lookups: Family<LookupLabels, Counter>,
    errors: Family<OpLabels, Counter>,
}

impl CacheMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "central_api_cache_lookups",
            "Cache lookups by cache (detail, history) and outcome (hit, miss, skipped: Redis unavailable or the key awaits invalidation)",
            self.lookups.clone(),
        );
        registry.register(
            "central_api_cache_errors",
            "Redis calls that failed or timed out, by operation (the store answered instead)",
            self.errors.clone(),
        );
    }

    fn lookup(&self, kind: Kind, outcome: &'static str) {
        self.lookups
            .get_or_create(&LookupLabels {
                cache: kind.name(),
                outcome,
            })
            .inc();
    }

    fn error(&self, op: &'static str) {
        self.errors.get_or_create(&OpLabels { op }).inc();
    }

    /// For tests: lookups of a kind with an outcome.
    pub fn lookups(&self, kind: Kind, outcome: &'static str) -> u64 {
        self.lookups
            .get_or_create(&LookupLabels {
                cache: kind.name(),
                outcome,
            })
            .get()
    }

    /// For tests: failed Redis calls of an operation.
    pub fn errors(&self, op: &'static str) -> u64 {
        self.errors.get_or_create(&OpLabels { op }).get()
    }
}

/// How long the breaker stays open after a Redis error.
const BREAKER: Duration = Duration::from_secs(1);

struct Redis {
    conn: ConnectionManager,
    open_until: Mutex<Option<Instant>>,
    timeout: Duration,
}

#[derive(Default)]
struct Memory {
    entries: HashMap<String, (Instant, HashMap<String, Vec<u8>>)>,
    order: VecDeque<String>,
    /// Invalidations per key, and an epoch bumped when that map is cleared
    /// (so a ticket from before the clear never matches).
    generations: HashMap<String, u64>,
    epoch: u64,
}

impl Memory {
    fn ticket(&self, key: &str) -> Ticket {
        Ticket(Some((
            self.epoch,
            self.generations.get(key).copied().unwrap_or(0),
        )))
    }

    fn remove(&mut self, key: &str) {
        if self.entries.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }
}

/// What a cache miss hands to the caller for its `put`: the key's
/// generation when it was looked up. A write that invalidates the key in
/// between bumps the generation, and the `put` of the stale value is
/// dropped. `Ticket(None)`: do not cache (Redis unavailable, or the key
/// awaits its invalidation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(Option<(u64, u64)>);

/// A lookup: the value on a hit, and the ticket for a `put` on a miss.
#[derive(Debug)]
pub struct Lookup {
    pub value: Option<Vec<u8>>,
    pub ticket: Ticket,
}

/// Stores a field only if the key's generation is still the ticket's:
/// KEYS[1] the hash, KEYS[2] its generation counter; ARGV: generation,
/// field, value, TTL in seconds.
const PUT_IF_CURRENT: &str = r#"
local g = redis.call('GET', KEYS[2]) or '0'
if g ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4], 'NX')
return 1
"#;

/// How long a generation counter outlives its last invalidation: far
/// longer than any request.
const GENERATION_TTL_S: u64 = 86_400;

fn generation_key(key: &str) -> String {
    format!("{key}:gen")
}

enum Backend {
    Redis(Redis),
    Memory(Mutex<Memory>, usize),
}

/// The read cache.
pub struct Cache {
    backend: Backend,
    /// Keys whose invalidation has not reached Redis yet.
    pending: Mutex<HashSet<String>>,
    detail_ttl: Duration,
    history_ttl: Duration,
    metrics: CacheMetrics,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field(
                "backend",
                &match self.backend {
                    Backend::Redis(_) => "redis",
                    Backend::Memory(..) => "memory",
                },
            )
            .finish_non_exhaustive()
    }
}

/// The key of an inspection's detail.
pub fn detail_key(id: uuid::Uuid) -> String {
    format!("insp:{id}")
}

/// The key of a vehicle's history pages.
pub fn history_key(plate: &str) -> String {
    format!("veh:{plate}")
}

impl Cache {
    /// Connects lazily: a Redis that is down at start is an outage like any
    /// other, not a failed start.
    pub fn new(config: &CacheConfig, metrics: CacheMetrics) -> Result<Cache, String> {
        let backend = match &config.redis_url {
            Some(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| format!("api.cache.redis_url: {e}"))?;
                let timeout = Duration::from_millis(config.timeout_ms);
                let manager = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(2));
                let conn = ConnectionManager::new_lazy_with_config(client, manager)
                    .map_err(|e| format!("api.cache.redis_url: {e}"))?;
                Backend::Redis(Redis {
                    conn,
                    open_until: Mutex::new(None),
                    timeout,
                })
            }
            None => Backend::Memory(Mutex::new(Memory::default()), config.memory_entries.max(1)),
        };
        Ok(Cache {
            backend,
            pending: Mutex::new(HashSet::new()),
            detail_ttl: Duration::from_secs(config.detail_ttl_seconds),
            history_ttl: Duration::from_secs(config.history_ttl_seconds),
            metrics,
        })
    }

    pub fn is_redis(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    fn ttl(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Detail => self.detail_ttl,
            Kind::History => self.history_ttl,
        }
    }

    fn is_pending(&self, key: &str) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    /// A cached value (a hit), or a miss with the ticket to store the
    /// value read from the store (outage or pending invalidation: a miss
    /// whose ticket does not cache).
    pub async fn get(&self, kind: Kind, key: &str, field: &str) -> Lookup {
        match &self.backend {
            Backend::Memory(memory, _) => {
                let mut m = memory.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let expired = m
                    .entries
                    .get(key)
                    .is_some_and(|(expires, _)| *expires <= now);
                if expired {
                    m.remove(key);
                }
                let value = m
                    .entries
                    .get(key)
                    .and_then(|(_, fields)| fields.get(field).cloned());
                self.metrics
                    .lookup(kind, if value.is_some() { "hit" } else { "miss" });
                Lookup {
                    value,
                    ticket: m.ticket(key),
                }
            }
            Backend::Redis(redis) => {
                let skipped = Lookup {
                    value: None,
                    ticket: Ticket(None),
                };
                if !self.flush_pending(redis).await || self.is_pending(key) {
                    self.metrics.lookup(kind, "skipped");
                    return skipped;
                }
                let mut conn = redis.conn.clone();
                let got: Option<(Option<Vec<u8>>, Option<u64>)> = self
                    .call(redis, "get", async move {
                        redis::pipe()
                            .cmd("HGET")
                            .arg(key)
                            .arg(field)
                            .cmd("GET")
                            .arg(generation_key(key))
                            .query_async(&mut conn)
                            .await
                    })
                    .await;
                match got {
                    Some((value, generation)) => {
                        self.metrics
                            .lookup(kind, if value.is_some() { "hit" } else { "miss" });
                        Lookup {
                            value,
                            ticket: Ticket(Some((0, generation.unwrap_or(0)))),
                        }
                    }
                    None => {
                        self.metrics.lookup(kind, "skipped");
                        skipped
                    }
                }
            }
        }
    }

    /// Stores a value read after `ticket`'s lookup (best effort): dropped
    /// when the key was invalidated since.
    pub async fn put(&self, kind: Kind, key: &str, field: &str, value: &[u8], ticket: Ticket) {
        let Ticket(Some((_, generation))) = ticket else {
            return;
        };
        let ttl = self.ttl(kind);
        match &self.backend {
            Backend::Memory(memory, capacity) => {
                let mut m = memory.lock().unwrap_or_else(|e| e.into_inner());
                if m.ticket(key) != ticket {
                    return;
                }
                let now = Instant::now();
                if !m.entries.contains_key(key) {
                    while m.entries.len() >= *capacity {
                        match m.order.pop_front() {
                            Some(oldest) => {
                                m.entries.remove(&oldest);
                            }
                            None => break,
                        }
                    }
                    m.order.push_back(key.to_owned());
                    m.entries
                        .insert(key.to_owned(), (now + ttl, HashMap::new()));
                }
                if let Some((_, fields)) = m.entries.get_mut(key) {
                    fields.insert(field.to_owned(), value.to_vec());
                }
            }
            Backend::Redis(redis) => {
                if !self.flush_pending(redis).await || self.is_pending(key) {
                    return;
                }
                let mut conn = redis.conn.clone();
                let value = value.to_vec();
                let _: Option<i64> = self
                    .call(redis, "put", async move {
                        redis::Script::new(PUT_IF_CURRENT)
                            .key(key)
                            .key(generation_key(key))
                            .arg(generation)
                            .arg(field)
                            .arg(value)
                            .arg(ttl.as_secs().max(1))
                            .invoke_async(&mut conn)
                            .await
                    })
                    .await;
            }
        }
    }

    /// Drops every field of these keys and bumps their generations (a read
    /// that began before is not cached). When Redis cannot be reached the
    /// keys stay pending: never read from the cache until the delete went
    /// through.
    pub async fn invalidate(&self, keys: &[String]) {
        match &self.backend {
            Backend::Memory(memory, capacity) => {
                let mut m = memory.lock().unwrap_or_else(|e| e.into_inner());
                for key in keys {
                    m.remove(key);
                    *m.generations.entry(key.clone()).or_insert(0) += 1;
                }
                // Bounded: a clear bumps the epoch, which voids every ticket.
                if m.generations.len() > capacity.saturating_mul(4).max(1024) {
                    m.generations.clear();
                    m.epoch += 1;
                }
            }
            Backend::Redis(redis) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(keys.iter().cloned());
                // Goes through at once when Redis is up; stays pending
                // otherwise.
                self.flush_pending(redis).await;
            }
        }
    }

    /// Deletes the pending keys; whether nothing is pending any more.
    async fn flush_pending(&self, redis: &Redis) -> bool {
        let keys: Vec<String> = {
            let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.is_empty() {
                return true;
            }
            pending.iter().cloned().collect()
        };
        let mut conn = redis.conn.clone();
        let cmd_keys = keys.clone();
        let done: Option<()> = self
            .call(redis, "invalidate", async move {
                let mut pipe = redis::pipe();
                pipe.atomic().cmd("DEL").arg(&cmd_keys).ignore();
                for key in &cmd_keys {
                    let generation = generation_key(key);
                    pipe.cmd("INCR").arg(&generation).ignore();
                    pipe.cmd("EXPIRE")
                        .arg(&generation)
                        .arg(GENERATION_TTL_S)
                        .ignore();
                }
                pipe.query_async(&mut conn).await
            })
            .await;
        if done.is_some() {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for key in &keys {
                pending.remove(key);
            }
            pending.is_empty()
        } else {
            false
        }
    }

    /// Runs one Redis call under the time limit and the breaker; `None` on
    /// any failure (counted and logged).
    async fn call<T>(
        &self,
        redis: &Redis,
        op: &'static str,
        work: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        {
            let open = redis.open_until.lock().unwrap_or_else(|e| e.into_inner());
            if open.is_some_and(|until| Instant::now() < until) {
                return None;
            }
        }
        let failure = match tokio::time::timeout(redis.timeout, work).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", redis.timeout.as_millis()),
        };
        self.metrics.error(op);
        let mut open = redis.open_until.lock().unwrap_or_else(|e| e.into_inner());
        if open.is_none_or(|until| Instant::now() >= until) {
            tracing::warn!(op, error = %failure, "redis unavailable; answering from the store for {} s", BREAKER.as_secs());
        }
        *open = Some(Instant::now() + BREAKER);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_masks_the_redis_password() {
        let config = CacheConfig {
            redis_url: Some("rediss://default:hunter2@cache.example:6380/0".into()),
            ..CacheConfig::default()
        };
        for shown in [format!("{config:?}"), format!("{config:#?}")] {
            assert!(
                shown.contains("rediss://default:***@cache.example:6380/0"),
                "{shown}"
            );
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    #[tokio::test]
    async fn a_read_that_began_before_an_invalidation_is_not_cached() {
        let cache = Cache::new(&CacheConfig::default(), CacheMetrics::default()).unwrap();
        let key = "insp:1";
        let before = cache.get(Kind::Detail, key, "v1").await;
        assert!(before.value.is_none());
        // A write commits and invalidates while the read is in the store.
        cache.invalidate(&[key.to_owned()]).await;
        cache
            .put(Kind::Detail, key, "v1", b"old", before.ticket)
            .await;
        let after = cache.get(Kind::Detail, key, "v1").await;
        assert_eq!(after.value, None, "the stale read was dropped");
        cache
            .put(Kind::Detail, key, "v1", b"new", after.ticket)
            .await;
        assert_eq!(
            cache.get(Kind::Detail, key, "v1").await.value.as_deref(),
            Some(&b"new"[..])
        );
    }

    #[tokio::test]
    async fn the_in_process_cache_stays_within_its_size() {
        let config = CacheConfig {
            memory_entries: 3,
            ..CacheConfig::default()
        };
        let cache = Cache::new(&config, CacheMetrics::default()).unwrap();
        for i in 0..10 {
            let key = format!("insp:{i}");
            let l = cache.get(Kind::Detail, &key, "v1").await;
            cache.put(Kind::Detail, &key, "v1", b"x", l.ticket).await;
            cache.invalidate(&[format!("insp:{}", i / 2)]).await;
        }
        let Backend::Memory(memory, _) = &cache.backend else {
            unreachable!()
        };
        let m = memory.lock().unwrap();
        assert!(m.entries.len() <= 3);
        assert_eq!(m.order.len(), m.entries.len());
    }
}
