//! dag-pb (codec 0x70): `PBNode { Links, Data }` with the canonical byte layout that reproduces
//! kubo's CIDs: links first, then data; link fields in the order Hash, Name, Tsize.

use bytes::Bytes;
use cid::Cid;

use super::pb::{self, Reader};
use crate::error::DecodeError;

/// A decoded dag-pb node. `data` is a slice of the block it came from (no copy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PbNode {
    pub links: Vec<PbLink>,
    pub data: Option<Bytes>,
}

/// A link of a dag-pb node. `name` distinguishes absent (`None`) from empty (`Some("")`),
/// because the two encode differently and so give different CIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbLink {
    pub cid: Cid,
    pub name: Option<String>,
    pub tsize: Option<u64>,
}

impl PbLink {
    pub fn new(cid: Cid, name: impl Into<String>, tsize: u64) -> Self {
        PbLink {
            cid,
            name: Some(name.into()),
            tsize: Some(tsize),
        }
    }

    /// The name, or "" when absent.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    fn encoded_len(&self, cid_len: usize) -> usize {
        let mut n = 1 + pb::varint_len(cid_len as u64) + cid_len;
        if let Some(name) = &self.name {
            n += 1 + pb::varint_len(name.len() as u64) + name.len();
        }
        if let Some(t) = self.tsize {
            n += 1 + pb::varint_len(t);
        }
        n
    }
}

impl PbNode {
    /// Decodes a dag-pb block. Unknown fields, duplicate `Data`, links without a hash and
    /// invalid CIDs are errors.
    pub fn decode(block: &Bytes) -> Result<PbNode, DecodeError> {
        let mut r = Reader::new(block);
        let mut node = PbNode::default();
        while !r.is_empty() {
            let (field, wt) = r.key()?;
            match field {
                1 => {
                    pb::expect(field, wt, pb::LEN)?;
                    if node.data.is_some() {
                        return Err(DecodeError::DuplicateField {
                            field,
                            message: "PBNode",
                        });
                    }
                    let range = r.bytes_range()?;
                    node.data = Some(block.slice(range));
                }
                2 => {
                    pb::expect(field, wt, pb::LEN)?;
                    node.links.push(decode_link(r.bytes()?)?);
                }
                _ => {
                    return Err(DecodeError::UnknownField {
                        field,
                        message: "PBNode",
                    })
                }
            }
        }
        Ok(node)
    }

    /// Encodes the node canonically.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out);
        out
    }

    /// Encodes the node canonically, appending to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut cid_buf = Vec::with_capacity(40);
        for link in &self.links {
            cid_buf.clear();
            link.cid
                .write_bytes(&mut cid_buf)
                .expect("writing to a Vec cannot fail");
            pb::put_key(out, 2, pb::LEN);
            pb::put_varint(out, link.encoded_len(cid_buf.len()) as u64);
            pb::put_bytes(out, 1, &cid_buf);
            if let Some(name) = &link.name {
                pb::put_bytes(out, 2, name.as_bytes());
            }
            if let Some(t) = link.tsize {
                pb::put_uint(out, 3, t);
            }
        }
        if let Some(data) = &self.data {
            pb::put_bytes(out, 1, data);
        }
    }

    fn encoded_len_hint(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.len() + 6) + self.links.len() * 64
    }
}

fn decode_link(buf: &[u8]) -> Result<PbLink, DecodeError> {
    let mut r = Reader::new(buf);
    let (mut cid, mut name, mut tsize) = (None, None, None);
    while !r.is_empty() {
        let (field, wt) = r.key()?;
        let dup = |set: bool| {
            if set {
                Err(DecodeError::DuplicateField {
                    field,
                    message: "PBLink",
                })
            } else {
                Ok(())
            }
        };
        match field {
            1 => {
                pb::expect(field, wt, pb::LEN)?;
                dup(cid.is_some())?;
                let bytes = r.bytes()?;
                let c = Cid::try_from(bytes).map_err(|e| DecodeError::LinkCid(e.to_string()))?;
                if c.encoded_len() != bytes.len() {
                    return Err(DecodeError::LinkCid("trailing bytes after CID".into()));
                }
                cid = Some(c);
            }
            2 => {
                pb::expect(field, wt, pb::LEN)?;
                dup(name.is_some())?;
                let s = std::str::from_utf8(r.bytes()?).map_err(|_| DecodeError::NameNotUtf8)?;
                name = Some(s.to_owned());
            }
            3 => {
                pb::expect(field, wt, pb::VARINT)?;
                dup(tsize.is_some())?;
                tsize = Some(r.varint()?);
            }
            _ => {
                return Err(DecodeError::UnknownField {
                    field,
                    message: "PBLink",
                })
            }
        }
    }
    Ok(PbLink {
        cid: cid.ok_or(DecodeError::LinkWithoutHash)?,
        name,
        tsize,
    })
}

/// The CIDs a dag-pb block links to, in order, without decoding names or data.
pub fn links(block: &[u8]) -> Result<Vec<Cid>, DecodeError> {
    let mut r = Reader::new(block);
    let mut out = Vec::new();
    let mut seen_data = false;
    while !r.is_empty() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                pb::expect(field, wt, pb::LEN)?;
                if seen_data {
                    return Err(DecodeError::DuplicateField {
                        field,
                        message: "PBNode",
                    });
                }
                seen_data = true;
                r.bytes()?;
            }
            2 => {
                pb::expect(field, wt, pb::LEN)?;
                out.push(decode_link(r.bytes()?)?.cid);
            }
            _ => {
                return Err(DecodeError::UnknownField {
                    field,
                    message: "PBNode",
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(s: &str) -> Cid {
        s.parse().unwrap()
    }

    #[test]
    fn empty_file_node_is_kubos() {
        // `ipfs add` of an empty file: Data = UnixFS{Type=File, filesize=0}.
        let node = PbNode {
            links: vec![],
            data: Some(Bytes::from_static(&[0x08, 0x02, 0x18, 0x00])),
        };
        assert_eq!(node.encode(), [0x0a, 0x04, 0x08, 0x02, 0x18, 0x00]);
    }

    #[test]
    fn round_trip_keeps_absent_and_empty_names_apart() {
        let c = cid("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH");
        let node = PbNode {
            links: vec![
                PbLink::new(c, "", 6),
                PbLink {
                    cid: c,
                    name: None,
                    tsize: None,
                },
            ],
            data: Some(Bytes::from_static(b"\x08\x02")),
        };
        let bytes = Bytes::from(node.encode());
        let back = PbNode::decode(&bytes).unwrap();
        assert_eq!(back, node);
        assert_eq!(links(&bytes).unwrap(), vec![c, c]);
    }

    #[test]
    fn data_before_links_is_accepted() {
        let c = cid("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH");
        let mut bytes = Vec::new();
        pb::put_bytes(&mut bytes, 1, b"\x08\x01");
        let link = PbNode {
            links: vec![PbLink::new(c, "a", 1)],
            data: None,
        }
        .encode();
        bytes.extend_from_slice(&link);
        let node = PbNode::decode(&Bytes::from(bytes)).unwrap();
        assert_eq!(node.links.len(), 1);
        assert_eq!(node.data.as_deref(), Some(&b"\x08\x01"[..]));
    }

    #[test]
    fn malformed_nodes_are_errors() {
        for bad in [
            &b"\x0a\x05ab"[..],               // truncated data
            &b"\x1a\x00"[..],                 // unknown field 3
            &b"\x12\x02\x12\x00"[..],         // link without hash
            &b"\x12\x04\x0a\x02\x12\x20"[..], // link hash that is not a CID
            &b"\x0a\x00\x0a\x00"[..],         // two Data fields
            &b"\x08\x01"[..],                 // Data as a varint
        ] {
            assert!(
                PbNode::decode(&Bytes::copy_from_slice(bad)).is_err(),
                "{bad:x?}"
            );
            assert!(links(bad).is_err(), "{bad:x?}");
        }
    }
}
