//! An immutable string kept inline when short (event ids): as large as a String, but an id of
//! up to 22 bytes needs no allocation of its own, so reading a customer's events' ids (every
//! render writes them all) does not visit one allocation per event.

use std::fmt;
use std::ops::Deref;

const INLINE: usize = 22;

#[derive(Clone)]
pub enum SmallStr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl SmallStr {
    /// Bytes held in an allocation of its own (0 when inline).
    pub fn heap_bytes(&self) -> usize {
        match self {
            SmallStr::Inline { .. } => 0,
            SmallStr::Heap(text) => text.len(),
        }
    }
}

impl From<&str> for SmallStr {
    fn from(text: &str) -> Self {
        if text.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            SmallStr::Inline { len: text.len() as u8, bytes }
        } else {
            SmallStr::Heap(text.into())
        }
    }
}

impl From<String> for SmallStr {
    fn from(text: String) -> Self {
        if text.len() <= INLINE {
            SmallStr::from(text.as_str())
        } else {
            SmallStr::Heap(text.into_boxed_str())
        }
    }
}

impl Deref for SmallStr {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            // Only whole &str values are stored, so the first `len` bytes are valid UTF-8.
            SmallStr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..*len as usize]).expect("stored from a str")
            }
            SmallStr::Heap(text) => text,
        }
    }
}

impl AsRef<str> for SmallStr {
    fn as_ref(&self) -> &str {
        self
    }
}

impl PartialEq for SmallStr {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for SmallStr {}

impl PartialEq<str> for SmallStr {
    fn eq(&self, other: &str) -> bool {
        **self == *other
    }
}

impl PartialEq<&str> for SmallStr {
    fn eq(&self, other: &&str) -> bool {
        **self == **other
    }
}

impl fmt::Debug for SmallStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl fmt::Display for SmallStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_stay_inline_and_every_id_reads_back_as_given() {
        assert_eq!(std::mem::size_of::<SmallStr>(), std::mem::size_of::<String>());
        for text in [
            "",
            "e1",
            "ev-b-00715654",
            "é€𝄞 twenty-two bytes",
            "0123456789012345678901",
            "a-uuid-0b3c2d4e-5f60-4a1b-8c9d-0e1f2a3b4c5d",
        ] {
            for id in [SmallStr::from(text), SmallStr::from(text.to_string())] {
                assert_eq!(&*id, text);
                assert_eq!(id, text);
                assert_eq!(id.heap_bytes(), if text.len() <= INLINE { 0 } else { text.len() });
                assert_eq!(id.clone(), id);
            }
        }
        assert!(matches!(SmallStr::from("0123456789012345678901"), SmallStr::Inline { len: 22, .. }));
        assert!(matches!(SmallStr::from("01234567890123456789012"), SmallStr::Heap(_)));
        assert_ne!(SmallStr::from("a"), SmallStr::from("b"));
    }
}
