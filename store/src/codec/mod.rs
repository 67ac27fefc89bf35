//! Just enough of each IPLD codec to find a block's links, so that the index can record them
//! once, at put time. dag-pb is implemented in full (the UnixFS layer builds on it).

pub mod cbor;
pub mod dagpb;
pub mod git;
pub mod pb;
pub mod unixfs;

use cid::Cid;

use crate::error::DecodeError;

/// Multicodec codes cairn knows by name.
pub mod codes {
    pub const RAW: u64 = 0x55;
    pub const DAG_PB: u64 = 0x70;
    pub const DAG_CBOR: u64 = 0x71;
    pub const DAG_JSON: u64 = 0x0129;
    pub const CBOR: u64 = 0x51;
    pub const JSON: u64 = 0x0200;
    pub const LIBP2P_KEY: u64 = 0x72;
    pub const GIT_RAW: u64 = super::git::GIT_RAW;
}

/// A short human name for a codec, as `ipfs` prints it.
pub fn codec_name(code: u64) -> String {
    match code {
        codes::RAW => "raw".into(),
        codes::DAG_PB => "dag-pb".into(),
        codes::DAG_CBOR => "dag-cbor".into(),
        codes::DAG_JSON => "dag-json".into(),
        codes::CBOR => "cbor".into(),
        codes::JSON => "json".into(),
        codes::LIBP2P_KEY => "libp2p-key".into(),
        codes::GIT_RAW => "git-raw".into(),
        other => format!("0x{other:x}"),
    }
}

/// The CIDs the block `cid` (whose bytes are `bytes`) links to. A git object's ids are as
/// long as its own hash; every other codec is read as [`links`] reads it.
pub fn links_of(cid: &Cid, bytes: &[u8]) -> Result<Vec<Cid>, DecodeError> {
    match cid.codec() {
        codes::GIT_RAW => git::links(bytes, cid.hash().size() as usize),
        codec => links(codec, bytes),
    }
}

/// The CIDs `bytes` links to, decoded with `codec` (a git object as sha1: see
/// [`links_of`]). Codecs without links (raw, plain cbor and json, anything unknown) have
/// none.
pub fn links(codec: u64, bytes: &[u8]) -> Result<Vec<Cid>, DecodeError> {
    match codec {
        codes::GIT_RAW => git::links(bytes, 20),
        codes::DAG_PB => dagpb::links(bytes),
        codes::DAG_CBOR => cbor::links(bytes),
        codes::DAG_JSON => dag_json_links(bytes),
        _ => Ok(Vec::new()),
    }
}

fn dag_json_links(bytes: &[u8]) -> Result<Vec<Cid>, DecodeError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::DagJson(e.to_string()))?;
    let mut out = Vec::new();
    let mut stack = vec![&value];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                if let (1, Some(serde_json::Value::String(s))) = (map.len(), map.get("/")) {
                    let cid = s
                        .parse::<Cid>()
                        .map_err(|e| DecodeError::DagJson(format!("link {s:?}: {e}")))?;
                    out.push(cid);
                } else {
                    stack.extend(map.values().rev());
                }
            }
            serde_json::Value::Array(items) => stack.extend(items.iter().rev()),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dag_json_links_are_found_and_bytes_are_not_links() {
        let doc = br#"{"a":{"/":"bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"},
                       "b":[{"/":{"bytes":"aGk"}}, {"/":"QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"}]}"#;
        assert_eq!(links(codes::DAG_JSON, doc).unwrap().len(), 2);
        assert!(links(codes::DAG_JSON, br#"{"/":"notacid"}"#).is_err());
        assert!(links(codes::DAG_JSON, b"{").is_err());
    }

    #[test]
    fn raw_and_unknown_codecs_have_no_links() {
        assert!(links(codes::RAW, b"\x12\x00garbage").unwrap().is_empty());
        assert!(links(0x9999, b"anything").unwrap().is_empty());
    }

    #[test]
    fn dag_cbor_garbage_is_an_error() {
        assert!(links(codes::DAG_CBOR, &[0xff, 0x00]).is_err());
    }
}
