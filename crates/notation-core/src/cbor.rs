//! The part of CBOR (RFC 8949) a COSE_Sign1 envelope uses: integers, byte and text
//! strings, arrays, maps, tags, booleans and null, definite lengths only. Bounded: at most
//! 16 levels deep, at most [`MAX_ENTRIES`] entries in one array or map and [`MAX_ITEMS`]
//! items in all, lengths checked against the input before anything is allocated, and
//! linear in the input (duplicate map keys are found with a hash set, never by comparing
//! every pair: a 1 MiB envelope of small keys cost a minute of CPU that way).

use std::collections::HashSet;

/// A decoded item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Item {
    /// An integer (major types 0 and 1).
    Int(i128),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A text string.
    Text(String),
    /// An array.
    Array(Vec<Item>),
    /// A map, in the order written (keys are unique).
    Map(Vec<(Item, Item)>),
    /// A tagged item.
    Tag(u64, Box<Item>),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

impl Item {
    /// The value under `key` in a map.
    pub fn get(&self, key: &Item) -> Option<&Item> {
        match self {
            Item::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

const MAX_DEPTH: usize = 16;
/// Entries of one array or map: a COSE_Sign1 envelope has four, its headers a handful,
/// a certificate chain a few certificates.
pub const MAX_ENTRIES: u64 = 1024;
/// Items decoded from one input, all levels together.
pub const MAX_ITEMS: usize = 16 * 1024;

/// Decodes exactly one item from `b`; trailing bytes are an error.
pub fn decode(b: &[u8]) -> Result<Item, String> {
    let mut r = Reader { b, at: 0, items: 0 };
    let item = r.item(0)?;
    if r.at != b.len() {
        return Err("trailing bytes after the CBOR item".to_owned());
    }
    Ok(item)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    items: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.at).ok_or("CBOR ends early")?;
        self.at += 1;
        Ok(v)
    }

    fn take(&mut self, n: u64) -> Result<&[u8], String> {
        let n = usize::try_from(n).map_err(|_| "CBOR length too large")?;
        if self.b.len() - self.at < n {
            return Err("CBOR length beyond the input".to_owned());
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn arg(&mut self, info: u8) -> Result<u64, String> {
        Ok(match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.byte()?),
            25 => u64::from(u16::from_be_bytes(
                self.take(2)?.try_into().map_err(|_| "CBOR")?,
            )),
            26 => u64::from(u32::from_be_bytes(
                self.take(4)?.try_into().map_err(|_| "CBOR")?,
            )),
            27 => u64::from_be_bytes(self.take(8)?.try_into().map_err(|_| "CBOR")?),
            _ => return Err("indefinite or reserved CBOR length".to_owned()),
        })
    }

    fn item(&mut self, depth: usize) -> Result<Item, String> {
        if depth > MAX_DEPTH {
            return Err("CBOR nested too deep".to_owned());
        }
        self.items += 1;
        if self.items > MAX_ITEMS {
            return Err(format!("CBOR with more than {MAX_ITEMS} items"));
        }
        let first = self.byte()?;
        let (major, info) = (first >> 5, first & 0x1f);
        if major == 7 {
            return match info {
                20 => Ok(Item::Bool(false)),
                21 => Ok(Item::Bool(true)),
                22 => Ok(Item::Null),
                _ => Err(
                    "CBOR floats and other simple values are not used by COSE envelopes".to_owned(),
                ),
            };
        }
        let n = self.arg(info)?;
        Ok(match major {
            0 => Item::Int(i128::from(n)),
            1 => Item::Int(-1 - i128::from(n)),
            2 => Item::Bytes(self.take(n)?.to_vec()),
            3 => Item::Text(
                String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "CBOR text is not UTF-8")?,
            ),
            4 | 5 if n > MAX_ENTRIES => {
                return Err(format!(
                "a CBOR array or map of {n} entries, over the {MAX_ENTRIES} an envelope may have"
            ))
            }
            4 => {
                // Each item takes at least one byte: a count beyond the input is a lie.
                if n > (self.b.len() - self.at) as u64 {
                    return Err("CBOR array longer than the input".to_owned());
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.item(depth + 1)?);
                }
                Item::Array(v)
            }
            5 => {
                if n.saturating_mul(2) > (self.b.len() - self.at) as u64 {
                    return Err("CBOR map longer than the input".to_owned());
                }
                let mut v = Vec::with_capacity(n as usize);
                let mut seen = HashSet::with_capacity(n as usize);
                for _ in 0..n {
                    let k = self.item(depth + 1)?;
                    if !seen.insert(k.clone()) {
                        return Err("CBOR map with a key twice".to_owned());
                    }
                    let val = self.item(depth + 1)?;
                    v.push((k, val));
                }
                Item::Map(v)
            }
            6 => Item::Tag(n, Box::new(self.item(depth + 1)?)),
            _ => return Err("CBOR major type".to_owned()),
        })
    }
}

/// The head of a CBOR item of major type `major` with argument `n`.
pub fn head(major: u8, n: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        let mut b = Vec::new();
        head(4, 2, &mut b);
        head(3, 2, &mut b);
        b.extend(b"hi");
        head(1, 6, &mut b); // -7
        assert_eq!(
            decode(&b).unwrap(),
            Item::Array(vec![Item::Text("hi".into()), Item::Int(-7)])
        );
        assert!(
            decode(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err(),
            "huge count"
        );
        assert!(
            decode(&[0xa2, 0x01, 0x01, 0x01, 0x02]).is_err(),
            "a key twice"
        );
        assert!(decode(&[0x5f]).is_err(), "indefinite length");
        let deep: Vec<u8> = std::iter::repeat_n(0x81, 40).chain([0x00]).collect();
        assert!(decode(&deep).is_err());
        assert!(decode(&[0x01, 0x02]).is_err(), "trailing");
    }

    /// A map of `n` distinct small keys (text "k0", "k1", …), each with value 0.
    fn map_of(n: u64) -> Vec<u8> {
        let mut b = Vec::new();
        head(5, n, &mut b);
        for i in 0..n {
            let k = format!("k{i}");
            head(3, k.len() as u64, &mut b);
            b.extend(k.as_bytes());
            head(0, 0, &mut b);
        }
        b
    }

    #[test]
    fn quadratic_duplicate_key_scan_a_1_mib_map_of_small_keys_is_refused_by_its_count() {
        // The attack: ~1 MiB of distinct small keys in one map. Compared pairwise, that
        // was ~10^10 comparisons on a tokio worker before any signature check.
        let big = map_of(120_000);
        assert!(big.len() > 900_000, "{}", big.len());
        let err = decode(&big).unwrap_err();
        assert!(err.contains("entries"), "{err}");
        // What an envelope really has still decodes, and a duplicate among many is found.
        assert!(matches!(decode(&map_of(MAX_ENTRIES)), Ok(Item::Map(m)) if m.len() == 1024));
        let mut dup = map_of(3);
        dup[0] = 0xa4; // four entries: the first key again
        dup.extend([0x62, b'k', b'0', 0x00]);
        assert_eq!(decode(&dup).unwrap_err(), "CBOR map with a key twice");
    }

    #[test]
    fn many_small_arrays_are_bounded_in_total_items() {
        // 1024 arrays of 1024 items each: every container within its own cap, the whole
        // over the item budget.
        let mut b = Vec::new();
        head(4, 64, &mut b);
        for _ in 0..64 {
            head(4, 1024, &mut b);
            b.extend(std::iter::repeat_n(0x00, 1024));
        }
        let err = decode(&b).unwrap_err();
        assert!(err.contains("items"), "{err}");
    }
}
