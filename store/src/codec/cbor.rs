//! A CBOR walker that finds DAG-CBOR links (tag 42) without building the data model.
//!
//! It is lenient where link extraction can afford to be: text strings need not be valid
//! UTF-8 and indefinite lengths are accepted, because blocks written by real-world encoders
//! (Filecoin's, for one) break those rules while their links are perfectly well-formed. It is
//! strict about structure: truncation, trailing bytes, reserved encodings and tag-42 values
//! that are not CIDs are errors.

use cid::Cid;

use crate::error::DecodeError;

const MAX_DEPTH: usize = 512;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn err(msg: impl Into<String>) -> DecodeError {
    DecodeError::DagCbor(msg.into())
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(n).map_err(|_| err("length overflows"))?;
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| err("length overflows"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| err("truncated"))?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64)?);
        Ok(a)
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Reads an item head: (major type, argument); `None` as argument for indefinite length.
    fn head(&mut self) -> Result<(u8, Option<u64>), DecodeError> {
        let ib = self.byte()?;
        let (major, info) = (ib >> 5, ib & 0x1f);
        let arg = match info {
            0..=23 => Some(info as u64),
            24 => Some(self.byte()? as u64),
            25 => Some(u16::from_be_bytes(self.array()?) as u64),
            26 => Some(u32::from_be_bytes(self.array()?) as u64),
            27 => Some(u64::from_be_bytes(self.array()?)),
            31 => None,
            _ => return Err(err(format!("reserved additional info {info}"))),
        };
        Ok((major, arg))
    }

    fn item(&mut self, out: &mut Vec<Cid>, depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(err("nested deeper than 512 levels"));
        }
        let (major, arg) = self.head()?;
        match (major, arg) {
            (0 | 1, Some(_)) => {}
            (2 | 3, Some(n)) => {
                self.take(n)?;
            }
            (2 | 3, None) => {
                while self.peek() != Some(0xff) {
                    let (m, n) = self.head()?;
                    match (m == major, n) {
                        (true, Some(n)) => {
                            self.take(n)?;
                        }
                        _ => return Err(err("bad chunk in an indefinite-length string")),
                    }
                }
                self.pos += 1;
            }
            (4 | 5, Some(n)) => {
                let items = if major == 5 { n.saturating_mul(2) } else { n };
                for _ in 0..items {
                    self.item(out, depth + 1)?;
                }
            }
            (4 | 5, None) => {
                while self.peek() != Some(0xff) {
                    self.item(out, depth + 1)?;
                    if major == 5 {
                        self.item(out, depth + 1)?;
                    }
                }
                self.pos += 1;
            }
            (6, Some(42)) => {
                let (m, n) = self.head()?;
                let (2, Some(n)) = (m, n) else {
                    return Err(err("tag 42 does not hold a byte string"));
                };
                let bytes = self.take(n)?;
                let Some((&0, cid)) = bytes.split_first() else {
                    return Err(err("tag 42 link without the 0x00 multibase prefix"));
                };
                let c = Cid::try_from(cid).map_err(|e| err(format!("invalid link: {e}")))?;
                out.push(c);
            }
            (6, Some(_)) => self.item(out, depth + 1)?,
            (7, Some(_)) => {} // simple values and floats: their bytes were read by head()
            (7, None) => return Err(err("unexpected break")),
            _ => return Err(err(format!("indefinite length for major type {major}"))),
        }
        Ok(())
    }
}

/// The links of one DAG-CBOR block, in document order.
pub fn links(bytes: &[u8]) -> Result<Vec<Cid>, DecodeError> {
    let mut c = Cursor { buf: bytes, pos: 0 };
    let mut out = Vec::new();
    c.item(&mut out, 0)?;
    if c.pos != bytes.len() {
        return Err(err(format!("{} trailing bytes", bytes.len() - c.pos)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_links_in_maps_and_lists_and_tolerates_bad_utf8() {
        let cid: Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
            .parse()
            .unwrap();
        let mut link = vec![0xd8, 0x2a, 0x58, (cid.to_bytes().len() + 1) as u8, 0x00];
        link.extend(cid.to_bytes());
        // {"a": [link, "\xff"], "b": 1.5}
        let mut doc = vec![0xa2, 0x61, b'a', 0x82];
        doc.extend(&link);
        doc.extend([0x61, 0xff, 0x61, b'b', 0xf9, 0x3e, 0x00]);
        assert_eq!(links(&doc).unwrap(), vec![cid]);
    }

    #[test]
    fn structural_errors() {
        for bad in [
            &[0x82, 0x01][..],
            &[0x01, 0x02],
            &[0xd8, 0x2a, 0x01],
            &[0x1c],
            &[0xff],
        ] {
            assert!(links(bad).is_err(), "{bad:x?}");
        }
        let deep = vec![0x81u8; 1000];
        assert!(links(&deep).is_err());
    }
}
