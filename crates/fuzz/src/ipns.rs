//! IPNS records from strangers (DHT `PUT_VALUE`, lookup answers, files): the verifier, the
//! unverified reader and the DHT's record store; and what else names bring: release-list
//! and profile blocks from any peer, and names as text.

use cairn_names::{
    profile::Profile,
    record,
    releases::{List, Node},
    time, Name,
};
use cairn_net::dht::records::{self, Records};

/// A name of a fixed Ed25519 key, so that inputs can carry records the fuzzer signed
/// nothing for, and a name taken from the input's own `pubKey`, if any.
pub fn ipns(data: &[u8]) {
    let fixed: Name = "k51qzi5uqu5dlkw8pxuw9qmqayfdeh4kfebhmreauqdc6a7c3y7d5i9fi8mk9w"
        .parse()
        .expect("a fixed name");
    let now = 1_800_000_000_000_000_000;
    // A release list block that decodes encodes to one that decodes the same; loaded as a
    // whole list (no older lists to read), it writes the same block.
    if let Ok(n) = Node::decode(data, None) {
        assert_eq!(Node::decode(&n.encode(), Some(&n.name)).as_ref(), Ok(&n));
        if let Ok(l) = List::load(data, None, |_| Err("no older lists here".into())) {
            assert_eq!(l.node(), n);
        }
    }
    // So does a profile.
    if let Ok(p) = Profile::decode(data, None) {
        assert_eq!(Profile::decode(&p.encode(), Some(&p.name)).as_ref(), Ok(&p));
    }
    // A name that parses prints as one that parses to it.
    if let Ok(Ok(n)) = std::str::from_utf8(data).map(str::parse::<Name>) {
        assert_eq!(n.to_string().parse::<Name>().ok(), Some(n));
    }
    let inspected = record::inspect(data);
    let mut names = vec![fixed];
    if let Ok(u) = &inspected {
        names.extend(u.key_name);
        // Whatever its validity says, parsing it and writing it back agree.
        if let Some(t) = time::parse(&u.validity) {
            assert_eq!(time::parse(&time::format(t)), Some(t));
        }
    }
    for name in names {
        if let Ok(r) = record::verify(&name, data, now) {
            // What verifies says what the reader reads, and is valid only until its time.
            let u = inspected.as_ref().expect("a verified record reads");
            assert_eq!(
                (u.value.as_str(), u.sequence, u.ttl),
                (r.value.as_str(), r.sequence, r.ttl)
            );
            assert!(r.validity > now);
            assert!(record::verify(&name, data, r.validity).is_err());
            assert!(data.len() <= record::MAX_RECORD);
        }
        let mut store = Records::default();
        let key = records::key_of(&name);
        if store.offer(&key, data, false, None).is_ok() {
            assert!(store.get(&key).is_some());
        }
    }
}
