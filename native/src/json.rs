//! A JSON reader with the semantics of the reference decoder (pydantic-core's jiter): ordered keys
//! (duplicates kept), integers beyond 64 bits kept exact, `NaN`/`Infinity` accepted, depth limit
//! 201, and the same error kinds and positions in its messages.

use std::borrow::Cow;

/// A parsed JSON value; objects keep every key in document order, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub enum JVal<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer outside i64, as its decimal text (sign included).
    BigInt(String),
    Float(f64),
    /// Borrowed from the input unless it had escapes.
    Str(Cow<'a, str>),
    Array(Vec<JVal<'a>>),
    Object(Vec<(Cow<'a, str>, JVal<'a>)>),
}

/// The key/value pairs of an object, in document order.
pub type Pairs<'a> = [(Cow<'a, str>, JVal<'a>)];

impl<'a> JVal<'a> {
    /// The value of `key` as the reference sees it: the last occurrence wins.
    pub fn get<'p>(pairs: &'p Pairs<'a>, key: &str) -> Option<&'p JVal<'a>> {
        pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Why the bytes are not JSON, with the byte index the reference reports it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub kind: &'static str,
    pub index: usize,
}

// The reference accepts 201 nested containers and refuses the 202nd at its opening byte.
const RECURSION_LIMIT: usize = 201;
const MAX_INT_CHARS: usize = 4300;

impl JsonError {
    /// "<kind> at line L column C", as pydantic prints it after "Invalid JSON: ".
    pub fn describe(&self, data: &[u8]) -> String {
        let index = self.index.min(data.len());
        let before = &data[..index];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let column = index - line_start;
        format!("{} at line {} column {}", self.kind, line, column)
    }
}

struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
    depth: usize,
}

type Res<T> = Result<T, JsonError>;

/// Parse a whole document (whitespace around one value, nothing after it).
pub fn parse(data: &[u8]) -> Res<JVal<'_>> {
    let mut parser = Parser { data, pos: 0, depth: 0 };
    let value = parser.value()?;
    parser.skip_ws();
    if parser.pos < data.len() {
        return Err(parser.err_here("trailing characters"));
    }
    Ok(value)
}

/// The length of the run of bytes before the first '"', '\\' or control character (all of
/// `bytes` if none), and whether that run is ASCII. Eight bytes at a time: each test below
/// flags a byte of the word with its high bit; a borrow can flag a byte wrongly only above a
/// byte that is rightly flagged, so the lowest flag is always a true one.
fn plain_run(bytes: &[u8]) -> (usize, bool) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut high = 0u64;
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let zero_in = |x: u64| x.wrapping_sub(ONES) & !x;
        let below_space = word.wrapping_sub(ONES * 0x20) & !word;
        let special = (zero_in(quote) | zero_in(backslash) | below_space) & HIGH;
        if special != 0 {
            let stop = i + (special.trailing_zeros() / 8) as usize;
            let ascii = high & HIGH == 0 && bytes[i..stop].is_ascii();
            return (stop, ascii);
        }
        high |= word;
        i += 8;
    }
    let tail = &bytes[i..];
    let stop = i + tail.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(tail.len());
    (stop, high & HIGH == 0 && bytes[i..stop].is_ascii())
}

impl<'a> Parser<'a> {
    // Errors point at the offending byte (1-based column = index + 1); at the end of input they
    // point just past the last byte, which the column formula prints as the input length.
    fn err_here(&self, kind: &'static str) -> JsonError {
        JsonError { kind, index: self.pos + 1 }
    }

    fn eof(&self, kind: &'static str) -> JsonError {
        JsonError { kind, index: self.data.len() }
    }

    fn skip_ws(&mut self) {
        while let Some(&b) = self.data.get(self.pos) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn value(&mut self) -> Res<JVal<'a>> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.eof("EOF while parsing a value")),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(JVal::Str(self.string()?)),
            Some(b't') => self.ident(b"true", JVal::Bool(true)),
            Some(b'f') => self.ident(b"false", JVal::Bool(false)),
            Some(b'n') => self.ident(b"null", JVal::Null),
            Some(b'N') => self.ident(b"NaN", JVal::Float(f64::NAN)),
            Some(b'I') => self.ident(b"Infinity", JVal::Float(f64::INFINITY)),
            Some(b'-') if self.data.get(self.pos + 1) == Some(&b'I') => {
                self.pos += 1;
                self.ident(b"Infinity", JVal::Float(f64::NEG_INFINITY))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err_here("expected value")),
        }
    }

    fn ident(&mut self, word: &[u8], value: JVal<'a>) -> Res<JVal<'a>> {
        for (i, &expected) in word.iter().enumerate() {
            match self.data.get(self.pos + i) {
                None => {
                    self.pos += i;
                    return Err(self.eof("EOF while parsing a value"));
                }
                Some(&b) if b == expected => {}
                Some(_) => {
                    self.pos += i;
                    return Err(self.err_here("expected ident"));
                }
            }
        }
        self.pos += word.len();
        Ok(value)
    }

    fn enter(&mut self) -> Res<()> {
        self.depth += 1;
        if self.depth > RECURSION_LIMIT {
            return Err(self.err_here("recursion limit exceeded"));
        }
        Ok(())
    }

    fn object(&mut self) -> Res<JVal<'a>> {
        self.enter()?;
        self.pos += 1; // '{'
        let mut pairs = Vec::with_capacity(12); // an event has 5 to 11 fields
        self.skip_ws();
        match self.peek() {
            None => return Err(self.eof("EOF while parsing an object")),
            Some(b'}') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(JVal::Object(pairs));
            }
            Some(b'"') => {}
            Some(_) => return Err(self.err_here("key must be a string")),
        }
        loop {
            let key = self.string()?;
            self.skip_ws();
            match self.peek() {
                None => return Err(self.eof("EOF while parsing an object")),
                Some(b':') => self.pos += 1,
                Some(_) => return Err(self.err_here("expected `:`")),
            }
            let value = self.value()?;
            pairs.push((key, value));
            self.skip_ws();
            match self.peek() {
                None => return Err(self.eof("EOF while parsing an object")),
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(JVal::Object(pairs));
                }
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    match self.peek() {
                        None => return Err(self.eof("EOF while parsing a value")),
                        Some(b'"') => {}
                        Some(b'}') => return Err(self.err_here("trailing comma")),
                        Some(_) => return Err(self.err_here("key must be a string")),
                    }
                }
                Some(_) => return Err(self.err_here("expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self) -> Res<JVal<'a>> {
        self.enter()?;
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        match self.peek() {
            None => return Err(self.eof("EOF while parsing a list")),
            Some(b']') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(JVal::Array(items));
            }
            Some(_) => {}
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                None => return Err(self.eof("EOF while parsing a list")),
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(JVal::Array(items));
                }
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        return Err(self.err_here("trailing comma"));
                    }
                }
                Some(_) => return Err(self.err_here("expected `,` or `]`")),
            }
        }
    }

    fn hex4(&mut self) -> Res<u32> {
        // self.pos is at the first hex digit
        let mut value = 0u32;
        for i in 0..4 {
            match self.data.get(self.pos + i) {
                None => {
                    self.pos += i;
                    return Err(self.eof("EOF while parsing a string"));
                }
                Some(&b) => match (b as char).to_digit(16) {
                    Some(d) => value = value * 16 + d,
                    None => {
                        self.pos += i;
                        return Err(self.err_here("invalid escape"));
                    }
                },
            }
        }
        self.pos += 4;
        Ok(value)
    }

    fn string(&mut self) -> Res<Cow<'a, str>> {
        self.pos += 1; // opening quote
        let content = self.pos;
        // Fast path: no escape before the closing quote, so the text is borrowed from the input.
        let rest = &self.data[content..];
        let (stop, ascii) = plain_run(rest);
        if rest.get(stop) == Some(&b'"') {
            let raw = &rest[..stop];
            let text = if ascii {
                // SAFETY: every byte is below 0x80, and ASCII is valid UTF-8.
                Some(unsafe { std::str::from_utf8_unchecked(raw) })
            } else {
                std::str::from_utf8(raw).ok()
            };
            if let Some(text) = text {
                self.pos = content + stop + 1;
                return Ok(Cow::Borrowed(text));
            }
        }
        let mut out: Vec<u8> = Vec::new();
        loop {
            let start = self.pos;
            while let Some(&b) = self.data.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.extend_from_slice(&self.data[start..self.pos]);
            match self.peek() {
                None => return Err(self.eof("EOF while parsing a string")),
                Some(b'"') => {
                    self.pos += 1;
                    if let Err(error) = std::str::from_utf8(&out) {
                        // Checked once the string is closed, on the decoded bytes; the reference
                        // reports the column just past the bad sequence, counted from the content.
                        let index = content + error.valid_up_to() + error.error_len().unwrap_or(1) + 1;
                        return Err(JsonError { kind: "invalid unicode code point", index });
                    }
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let Some(escape) = self.peek() else {
                        return Err(self.eof("EOF while parsing a string"));
                    };
                    self.pos += 1;
                    let simple = match escape {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(8),
                        b'f' => Some(12),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'u' => None,
                        _ => {
                            self.pos -= 1;
                            return Err(self.err_here("invalid escape"));
                        }
                    };
                    if let Some(byte) = simple {
                        out.push(byte);
                        continue;
                    }
                    let first = self.hex4()?;
                    let code = if (0xD800..0xDC00).contains(&first) {
                        // A leading surrogate must be followed by an escaped trailing one.
                        match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
                            (Some(b'\\'), Some(b'u')) => {}
                            (None, _) | (Some(b'\\'), None) => {
                                return Err(self.eof("EOF while parsing a string"))
                            }
                            (Some(b'\\'), Some(_)) => {
                                self.pos += 1;
                                return Err(self.err_here("unexpected end of hex escape"));
                            }
                            _ => return Err(self.err_here("unexpected end of hex escape")),
                        }
                        self.pos += 2;
                        let second = self.hex4()?;
                        if !(0xDC00..0xE000).contains(&second) {
                            self.pos -= 1;
                            return Err(self.err_here("lone leading surrogate in hex escape"));
                        }
                        0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                    } else if (0xDC00..0xE000).contains(&first) {
                        self.pos -= 1;
                        return Err(self.err_here("lone leading surrogate in hex escape"));
                    } else {
                        first
                    };
                    let ch = char::from_u32(code).unwrap_or('\u{FFFD}');
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                Some(_) => {
                    return Err(
                        self.err_here("control character (\\u0000-\\u001F) found while parsing a string")
                    )
                }
            }
        }
        // Every raw chunk was checked above and escapes decode to whole characters.
        Ok(Cow::Owned(String::from_utf8(out).unwrap_or_default()))
    }

    fn number(&mut self) -> Res<JVal<'a>> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            None => return Err(self.eof("EOF while parsing a value")),
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(self.err_here("invalid number"));
                }
            }
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.pos += 1;
                }
            }
            Some(_) => return Err(self.err_here("invalid number")),
        }
        // As Python's int(), the reference reads at most 4300 characters (sign included) before
        // any fraction or exponent, and points just past the 4301st.
        if self.pos - start > MAX_INT_CHARS {
            return Err(JsonError { kind: "number out of range", index: start + MAX_INT_CHARS + 2 });
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            is_float = true;
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(match self.peek() {
                    None => self.eof("EOF while parsing a value"),
                    Some(_) => self.err_here("invalid number"),
                });
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            is_float = true;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(match self.peek() {
                    None => self.eof("EOF while parsing a value"),
                    Some(_) => self.err_here("invalid number"),
                });
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        // Safe: the slice holds only ASCII digits, signs, '.', 'e'.
        let text = std::str::from_utf8(&self.data[start..self.pos]).unwrap_or("0");
        if is_float {
            return Ok(JVal::Float(text.parse::<f64>().unwrap_or(f64::NAN)));
        }
        Ok(match text.parse::<i64>() {
            Ok(value) => JVal::Int(value),
            Err(_) => JVal::BigInt(text.to_string()),
        })
    }
}

/// Serialise like orjson.dumps: compact, keys in first-seen order with the last value (a Python
/// dict built from the document), non-ASCII kept, NaN/Infinity as null. Err: an integer beyond
/// the 64-bit range (orjson's "Integer exceeds 64-bit range").
pub fn dumps(value: &JVal<'_>, out: &mut Vec<u8>) -> Result<(), &'static str> {
    match value {
        JVal::Null => out.extend_from_slice(b"null"),
        JVal::Bool(true) => out.extend_from_slice(b"true"),
        JVal::Bool(false) => out.extend_from_slice(b"false"),
        JVal::Int(v) => out.extend_from_slice(v.to_string().as_bytes()),
        JVal::BigInt(text) => match text.parse::<u64>() {
            Ok(v) => out.extend_from_slice(v.to_string().as_bytes()),
            Err(_) => return Err("Integer exceeds 64-bit range"),
        },
        JVal::Float(v) => {
            if v.is_finite() {
                format_float(*v, out);
            } else {
                out.extend_from_slice(b"null");
            }
        }
        JVal::Str(text) => dump_str(text, out),
        JVal::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                dumps(item, out)?;
            }
            out.push(b']');
        }
        JVal::Object(pairs) => {
            out.push(b'{');
            let mut first = true;
            for (i, (key, _)) in pairs.iter().enumerate() {
                // A Python dict keeps the first position of a key and its last value.
                if pairs[..i].iter().any(|(k, _)| k == key) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                dump_str(key, out);
                out.push(b':');
                let last = JVal::get(&pairs[i..], key).unwrap_or(&JVal::Null);
                dumps(last, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// A finite float as orjson writes it: the shortest round-trip digits, positional for decimal
/// exponents -5..=15 ("0.00001", "1000000000000000.0"), else scientific ("1e-6", "1.25e+16").
fn format_float(v: f64, out: &mut Vec<u8>) {
    let sci = format!("{v:e}"); // shortest round-trip digits: "-1.25e16", "1e-7", "0e0"
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    out.extend_from_slice(sign.as_bytes());
    if !(-5..16).contains(&exponent) {
        let exp_sign = if exponent >= 0 { "+" } else { "-" };
        out.extend_from_slice(format!("{mantissa}e{exp_sign}{}", exponent.abs()).as_bytes());
        return;
    }
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if exponent >= 0 {
        let split = exponent as usize + 1;
        let whole = if digits.len() >= split {
            digits[..split].to_string()
        } else {
            format!("{digits}{}", "0".repeat(split - digits.len()))
        };
        let fraction = if digits.len() > split { &digits[split..] } else { "0" };
        out.extend_from_slice(format!("{whole}.{fraction}").as_bytes());
    } else {
        let zeros = "0".repeat((-exponent - 1) as usize);
        out.extend_from_slice(format!("0.{zeros}{digits}").as_bytes());
    }
}

pub fn dump_str(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in text.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_scan_of_string_content_agrees_with_a_byte_by_byte_scan() {
        let alphabet = [b'a', b'"', b'\\', 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xa9, 0xff, b'!', 0x01];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            // Mostly plain bytes, with a special one now and then at any position.
            let bytes: Vec<u8> = (0..len)
                .map(|n| {
                    let pick = (x >> (n % 48)) as usize;
                    if pick % 7 == 0 {
                        alphabet[pick / 7 % alphabet.len()]
                    } else {
                        b'a' + (pick % 26) as u8
                    }
                })
                .collect();
            let stop = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(len);
            assert_eq!(plain_run(&bytes), (stop, bytes[..stop].is_ascii()), "{bytes:?}");
        }
    }

    fn err(text: &str) -> String {
        parse(text.as_bytes()).unwrap_err().describe(text.as_bytes())
    }

    #[test]
    fn errors_name_the_reference_kind_and_position() {
        assert_eq!(err(""), "EOF while parsing a value at line 1 column 0");
        assert_eq!(err("{"), "EOF while parsing an object at line 1 column 1");
        assert_eq!(err("{\"a\":1,}"), "trailing comma at line 1 column 8");
        assert_eq!(err("{a:1}"), "key must be a string at line 1 column 2");
        assert_eq!(err("{\"a\":tru}"), "expected ident at line 1 column 9");
        assert_eq!(err("\n\n  {\"a\":"), "EOF while parsing a value at line 3 column 7");
        let long = format!("{{\"a\":-{}.5}}", "9".repeat(4300));
        assert_eq!(err(&long), "number out of range at line 1 column 4307");
    }

    #[test]
    fn keeps_duplicates_and_big_integers() {
        let value = parse(b"{\"a\":1,\"a\":123456789012345678901234567890}").unwrap();
        let JVal::Object(pairs) = value else { panic!("object expected") };
        assert_eq!(pairs.len(), 2);
        assert_eq!(JVal::get(&pairs, "a"), Some(&JVal::BigInt("123456789012345678901234567890".into())));
    }

    #[test]
    fn floats_read_like_orjson() {
        let cases = [
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-7, "1e-7"),
            (1e-5, "0.00001"),
            (1.234e-5, "0.00001234"),
            (-0.0, "-0.0"),
            (123456789.0, "123456789.0"),
            (2.5, "2.5"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for (value, text) in cases {
            let mut out = Vec::new();
            format_float(value, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }

    #[test]
    fn dumps_like_orjson() {
        let value = parse("{\"b\":1.0,\"a\":[1e16,null,\"é\\n\"],\"b\":NaN}".as_bytes()).unwrap();
        let mut out = Vec::new();
        dumps(&value, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\"b\":null,\"a\":[1e+16,null,\"é\\n\"]}");
    }
}
