//! The provider records a DHT keeps: ours, and what others announce to us, each bounded on
//! its own. One store per DHT, so a record announced on the LAN DHT (with LAN addresses) is
//! never served on the public one.
//!
//! | records                      | bound                              | past it                         |
//! |------------------------------|------------------------------------|---------------------------------|
//! | ours (keys we provide)       | [`OWN_KEYS`]                       | `start_providing` fails         |
//! | others', in all              | [`OTHERS`]                         | expired ones go first, then refused |
//! | others', from one provider   | [`PER_PROVIDER`]                   | refused until some expire       |
//! | providers of one key         | [`PROVIDERS_PER_KEY`] (kad's `k`)  | refused                         |
//! | addresses in one record      | [`ADDRS_PER_RECORD`], in scope     | the rest dropped                |
//!
//! Others' records cannot crowd ours out: sixteen identities announcing 65,536 keys each
//! once filled a shared store and made our own announcements fail. Each record expires
//! (kad's 48 hours, or sooner if the record says so) and gives its provider its room back,
//! so a peer that keeps re-announcing is refused only while its share is full.
//! Value records (`PUT_VALUE`) are IPNS records only, kept in [`super::records`].

use std::{
    borrow::Cow,
    collections::{hash_map::Entry, HashMap, VecDeque},
    time::Duration,
};

use libp2p::{
    kad::{
        store::{Error, RecordStore, Result},
        ProviderRecord, Record, RecordKey,
    },
    PeerId,
};
use std::time::Instant;

use super::{addrs::Scope, records::Records};

/// Keys we provide ourselves.
pub const OWN_KEYS: usize = 1 << 20;
/// Records from others, in all.
pub const OTHERS: usize = 1 << 18;
/// Records from one provider.
pub const PER_PROVIDER: usize = 1 << 15;
/// Providers kept for one key (a GET_PROVIDERS answer names at most 20 anyway).
pub const PROVIDERS_PER_KEY: usize = 20;
/// Addresses kept in one record from another peer.
pub const ADDRS_PER_RECORD: usize = 4;
/// How long a record from another peer lives when it says nothing shorter (kad's default).
pub const RECORD_TTL: Duration = Duration::from_secs(48 * 3600);

/// A bounded, expiring provider-record store for one DHT.
pub struct ProviderStore {
    local: PeerId,
    scope: Scope,
    own: HashMap<RecordKey, ProviderRecord>,
    others: HashMap<RecordKey, Vec<ProviderRecord>>,
    per_provider: HashMap<PeerId, usize>,
    total: usize,
    /// When each record from others expires, in the order they were added (one TTL for
    /// all, so the order of expiry too); an entry whose record was renewed or removed since
    /// is skipped.
    expiry: VecDeque<(Instant, RecordKey, PeerId)>,
    /// IPNS records, verified before they are kept.
    pub records: Records,
}

impl ProviderStore {
    pub fn new(local: PeerId, scope: Scope) -> ProviderStore {
        ProviderStore {
            local,
            scope,
            own: HashMap::new(),
            others: HashMap::new(),
            per_provider: HashMap::new(),
            total: 0,
            expiry: VecDeque::new(),
            records: Records::default(),
        }
    }

    /// Records from others held now.
    pub fn others_len(&self) -> usize {
        self.total
    }

    /// Records `provider` has here.
    pub fn of(&self, provider: &PeerId) -> usize {
        self.per_provider.get(provider).copied().unwrap_or(0)
    }

    /// Drops every record from others that expired by `now`.
    pub fn prune(&mut self, now: Instant) {
        while let Some((t, _, _)) = self.expiry.front() {
            if *t > now {
                break;
            }
            let Some((t, key, provider)) = self.expiry.pop_front() else {
                break;
            };
            let current = self
                .others
                .get(&key)
                .and_then(|v| v.iter().find(|r| r.provider == provider))
                .and_then(|r| r.expires);
            if current == Some(t) {
                self.remove_other(&key, &provider);
            }
        }
        // Renewed and removed records leave stale entries behind; when they outnumber the
        // records, drop them in one pass.
        if self.expiry.len() > 2 * self.total + 1024 {
            let others = &self.others;
            self.expiry.retain(|(t, k, p)| {
                others
                    .get(k)
                    .and_then(|v| v.iter().find(|r| r.provider == *p))
                    .is_some_and(|r| r.expires == Some(*t))
            });
        }
    }

    fn remove_other(&mut self, key: &RecordKey, provider: &PeerId) {
        let Entry::Occupied(mut e) = self.others.entry(key.clone()) else {
            return;
        };
        let before = e.get().len();
        e.get_mut().retain(|r| r.provider != *provider);
        if e.get().len() < before {
            self.total -= 1;
            if let Entry::Occupied(mut n) = self.per_provider.entry(*provider) {
                *n.get_mut() -= 1;
                if *n.get() == 0 {
                    n.remove();
                }
            }
        }
        if e.get().is_empty() {
            e.remove();
        }
    }

    fn add_other(&mut self, mut record: ProviderRecord, now: Instant) -> Result<()> {
        self.prune(now);
        let latest = now + RECORD_TTL;
        let expires = record.expires.map_or(latest, |t| t.min(latest));
        record.expires = Some(expires);
        record.addresses = self.scope.filter(record.addresses);
        record.addresses.truncate(ADDRS_PER_RECORD);
        let (key, provider) = (record.key.clone(), record.provider);
        let provider_full = self.of(&provider) >= PER_PROVIDER;
        let total_full = self.total >= OTHERS;
        let list = self.others.entry(key.clone()).or_default();
        if let Some(r) = list.iter_mut().find(|r| r.provider == provider) {
            // A renewal: same room, new expiry.
            *r = record;
            self.expiry.push_back((expires, key, provider));
            return Ok(());
        }
        let full = list.len() >= PROVIDERS_PER_KEY || total_full || provider_full;
        if full {
            if list.is_empty() {
                self.others.remove(&key);
            }
            return Err(Error::MaxProvidedKeys);
        }
        list.push(record);
        self.total += 1;
        *self.per_provider.entry(provider).or_default() += 1;
        self.expiry.push_back((expires, key, provider));
        Ok(())
    }
}

impl RecordStore for ProviderStore {
    type RecordsIter<'a> = std::iter::Empty<Cow<'a, Record>>;
    type ProvidedIter<'a> = std::iter::Map<
        std::collections::hash_map::Values<'a, RecordKey, ProviderRecord>,
        fn(&'a ProviderRecord) -> Cow<'a, ProviderRecord>,
    >;

    fn get(&self, key: &RecordKey) -> Option<Cow<'_, Record>> {
        self.records.get(key).map(|h| {
            Cow::Owned(Record {
                key: key.clone(),
                value: h.bytes.clone(),
                publisher: None,
                expires: Some(h.expires),
            })
        })
    }

    /// kad calls this for records this node publishes (`put_record`); records from peers
    /// are offered by `Dht::on_event`, which knows whom to blame.
    fn put(&mut self, r: Record) -> Result<()> {
        let own = r.publisher == Some(self.local);
        match self.records.offer(&r.key, &r.value, own, None) {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::MaxRecords),
        }
    }

    fn remove(&mut self, key: &RecordKey) {
        self.records.remove(key);
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        std::iter::empty()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> Result<()> {
        if record.provider == self.local {
            if !self.own.contains_key(&record.key) && self.own.len() >= OWN_KEYS {
                return Err(Error::MaxProvidedKeys);
            }
            self.own.insert(record.key.clone(), record);
            return Ok(());
        }
        self.add_other(record, Instant::now())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        let mut out: Vec<ProviderRecord> = self.own.get(key).cloned().into_iter().collect();
        if let Some(v) = self.others.get(key) {
            out.extend(v.iter().cloned());
        }
        out
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.own.values().map(Cow::Borrowed)
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        if *provider == self.local {
            self.own.remove(key);
        } else {
            self.remove_other(key, provider);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: u32, provider: PeerId, expires: Option<Instant>) -> ProviderRecord {
        ProviderRecord {
            key: RecordKey::new(&key.to_be_bytes()),
            provider,
            expires,
            addresses: vec![
                "/ip4/10.0.0.1/tcp/1".parse().unwrap(),
                "/ip4/8.8.8.8/tcp/1".parse().unwrap(),
            ],
        }
    }

    /// A provider that filled its share is refused while its records live, and accepted again
    /// once they expire (it is not refused for the life of the process).
    #[test]
    fn a_providers_share_comes_back_when_its_records_expire() {
        let me = PeerId::random();
        let honest = PeerId::random();
        let mut s = ProviderStore::new(me, Scope::Lan);
        let now = Instant::now();
        let soon = now + Duration::from_secs(60);
        for k in 0..PER_PROVIDER as u32 {
            s.add_other(record(k, honest, Some(soon)), now).unwrap();
        }
        assert!(s
            .add_other(record(u32::MAX, honest, Some(soon)), now)
            .is_err());
        // A renewal of a record it has is no new record: accepted.
        s.add_other(record(7, honest, Some(soon)), now).unwrap();
        assert_eq!(s.of(&honest), PER_PROVIDER);
        let later = soon + Duration::from_secs(1);
        s.add_other(record(u32::MAX, honest, None), later).unwrap();
        assert_eq!(s.of(&honest), 1, "the expired records gave their room back");
        assert_eq!(s.others_len(), 1);
    }

    /// Identities filling the store for others leave our own announcements room.
    #[test]
    fn others_cannot_crowd_out_our_own_records() {
        let me = PeerId::random();
        let mut s = ProviderStore::new(me, Scope::Lan);
        let mut refused = 0;
        for i in 0..(OTHERS / PER_PROVIDER + 2) {
            let sybil = PeerId::random();
            for k in 0..PER_PROVIDER as u32 {
                if s.add_provider(record(i as u32 * PER_PROVIDER as u32 + k, sybil, None))
                    .is_err()
                {
                    refused += 1;
                }
            }
        }
        assert_eq!(s.others_len(), OTHERS);
        assert!(refused >= 2 * PER_PROVIDER);
        s.add_provider(ProviderRecord::new(RecordKey::new(b"ours"), me, vec![]))
            .expect("room for our own");
        assert_eq!(s.provided().count(), 1);
        assert_eq!(s.providers(&RecordKey::new(b"ours")).len(), 1);
    }

    /// A record announced on the public DHT keeps only public addresses; on the LAN DHT,
    /// the private ones too; at most four either way; never more than twenty providers a key.
    #[test]
    fn records_keep_the_addresses_their_dht_allows() {
        let (me, p) = (PeerId::random(), PeerId::random());
        let mut public = ProviderStore::new(me, Scope::Public);
        let mut lan = ProviderStore::new(me, Scope::Lan);
        public.add_provider(record(1, p, None)).unwrap();
        lan.add_provider(record(1, p, None)).unwrap();
        let key = RecordKey::new(&1u32.to_be_bytes());
        assert_eq!(public.providers(&key)[0].addresses.len(), 1);
        assert_eq!(lan.providers(&key)[0].addresses.len(), 2);
        let mut many = record(2, p, None);
        many.addresses = (0..50u16)
            .map(|n| format!("/ip4/10.0.0.1/tcp/{n}").parse().unwrap())
            .collect();
        lan.add_provider(many).unwrap();
        let key2 = RecordKey::new(&2u32.to_be_bytes());
        assert_eq!(lan.providers(&key2)[0].addresses.len(), ADDRS_PER_RECORD);
        for _ in 0..30 {
            let _ = lan.add_provider(record(3, PeerId::random(), None));
        }
        assert_eq!(
            lan.providers(&RecordKey::new(&3u32.to_be_bytes())).len(),
            PROVIDERS_PER_KEY
        );
    }
}
