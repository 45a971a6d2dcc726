//! NumPy's `.npy` format (NEP 1): the magic `\x93NUMPY`, a major and a minor version byte, the
//! header length (`u16` little-endian in version 1, `u32` in versions 2 and 3), then a header
//! that is a Python dict literal such as
//! `{'descr': '|u1', 'fortran_order': False, 'shape': (100, 28, 28), }`, then the data in
//! C order. Only integer dtypes are read here.
//!
//! Nothing a header claims is allocated unchecked: the header itself is at most
//! [`MAX_HEADER_BYTES`], and data is read only when the shape's size (checked for overflow)
//! fits in the bytes the caller says the array can hold.

use std::collections::HashMap;
use std::io::Read;

use crate::limits;

/// The longest header read. NumPy itself refuses headers over 10000 bytes unless told
/// otherwise; its own headers are a line of under 200.
const MAX_HEADER_BYTES: usize = 1 << 16;

/// An element type: `descr` such as `|u1`, `<i8`, `>u4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dtype {
    pub signed: bool,
    /// Bytes per element: 1, 2, 4 or 8.
    pub size: usize,
    pub big_endian: bool,
}

impl Dtype {
    fn parse(descr: &str) -> Result<Dtype, String> {
        let unsupported = || format!("dtype {descr:?} is not supported: expected unsigned or signed integers such as '|u1' or '<i8'");
        let mut chars = descr.chars();
        let big_endian = match chars.next() {
            Some('<' | '|' | '=') => false,
            Some('>') => true,
            _ => return Err(unsupported()),
        };
        let signed = match chars.next() {
            Some('u') => false,
            Some('i') => true,
            _ => return Err(unsupported()),
        };
        let size = match chars.as_str() {
            "1" => 1,
            "2" => 2,
            "4" => 4,
            "8" => 8,
            _ => return Err(unsupported()),
        };
        Ok(Dtype { signed, size, big_endian })
    }

    fn is_u8(self) -> bool {
        self.size == 1 && !self.signed
    }

    /// The element at the start of `bytes` as an `i128`.
    fn value(self, bytes: &[u8]) -> i128 {
        let mut buffer = [0u8; 8];
        buffer[..self.size].copy_from_slice(&bytes[..self.size]);
        if self.big_endian {
            buffer[..self.size].reverse();
        }
        let unsigned = u64::from_le_bytes(buffer);
        if self.signed {
            let shift = 64 - 8 * self.size as u32;
            i128::from(((unsigned << shift) as i64) >> shift)
        } else {
            i128::from(unsigned)
        }
    }
}

/// An array's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl Header {
    /// Elements times their size: the data bytes the header promises.
    pub fn data_bytes(&self) -> Result<usize, String> {
        limits::product(self.shape.iter().copied().chain([self.dtype.size]))
            .ok_or_else(|| format!("shape {:?} has more elements than memory can hold", self.shape))
    }
}

/// Reads the magic, version and header; leaves `reader` at the first data byte.
pub(crate) fn read_header(reader: &mut dyn Read) -> Result<Header, String> {
    let (descr, shape) = read_raw_header(reader)?;
    Ok(Header { dtype: Dtype::parse(&descr)?, shape })
}

/// A little-endian float32 array (`'<f4'`, C order): its shape and values.
pub fn read_f32_array(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), String> {
    let mut reader = bytes;
    let (descr, shape) = read_raw_header(&mut reader)?;
    if descr != "<f4" {
        return Err(format!("dtype {descr:?} is not float32: save the array with .astype(np.float32)"));
    }
    let needed = limits::product(shape.iter().copied().chain([4]));
    if needed != Some(reader.len()) {
        let needed = needed.map_or("more".to_owned(), |needed| needed.to_string());
        return Err(format!("shape {shape:?} needs {needed} data bytes, the file has {}", reader.len()));
    }
    Ok((shape, reader.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
}

/// A version 1 `.npy` file of little-endian float32 values.
pub fn encode_f32_array(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    encode("<f4", shape, &data)
}

fn read_raw_header(reader: &mut dyn Read) -> Result<(String, Vec<usize>), String> {
    let mut start = [0u8; 8];
    reader.read_exact(&mut start).map_err(|e| format!("cannot read the .npy preamble: {e}"))?;
    if &start[..6] != b"\x93NUMPY" {
        return Err("not a .npy array (no \\x93NUMPY magic)".into());
    }
    let header_len = match start[6] {
        1 => {
            let mut len = [0u8; 2];
            reader.read_exact(&mut len).map_err(|e| format!("truncated header: {e}"))?;
            usize::from(u16::from_le_bytes(len))
        }
        2 | 3 => {
            let mut len = [0u8; 4];
            reader.read_exact(&mut len).map_err(|e| format!("truncated header: {e}"))?;
            u32::from_le_bytes(len) as usize
        }
        major => return Err(format!(".npy format version {major} is not supported (1, 2 or 3)")),
    };
    if header_len > MAX_HEADER_BYTES {
        return Err(format!("the header claims {header_len} bytes; at most {MAX_HEADER_BYTES} are read"));
    }
    let mut text = vec![0u8; header_len];
    reader.read_exact(&mut text).map_err(|e| format!("truncated header: {e}"))?;
    let text = String::from_utf8_lossy(&text);
    let dict = parse_dict(&text).map_err(|reason| format!("header {:?}: {reason}", text.trim()))?;
    let descr = match dict.get("descr") {
        Some(Value::Str(descr)) => descr.clone(),
        Some(_) => return Err("structured dtypes are not supported: expected a plain integer array".into()),
        None => return Err("header has no 'descr'".into()),
    };
    match dict.get("fortran_order") {
        Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            return Err("fortran_order is True: save the array in C order (np.ascontiguousarray) and try again".into());
        }
        _ => return Err("header has no fortran_order True/False".into()),
    }
    let shape = match dict.get("shape") {
        Some(Value::Tuple(shape)) => shape.clone(),
        _ => return Err("header has no shape tuple".into()),
    };
    Ok((descr, shape))
}

/// Reads the data of a `uint8` array that can hold at most `available` data bytes.
pub(crate) fn read_u8(reader: &mut dyn Read, header: &Header, available: u64) -> Result<Vec<u8>, String> {
    if !header.dtype.is_u8() {
        return Err(format!("expected uint8 pixels ('|u1'), got {:?}", header.dtype));
    }
    read_data(reader, header.data_bytes()?, available)
}

/// Reads a label array of shape `(N,)` or `(N, 1)` and any integer dtype that can hold at
/// most `available` data bytes; every label must fit a `u32`.
pub(crate) fn read_labels(reader: &mut dyn Read, header: &Header, available: u64) -> Result<Vec<u32>, String> {
    match header.shape[..] {
        [_] | [_, 1] => {}
        _ => {
            return Err(format!("labels have shape {:?}; expected (N,) or (N, 1) (multi-label datasets are not supported)", header.shape));
        }
    }
    let data = read_data(reader, header.data_bytes()?, available)?;
    data.chunks_exact(header.dtype.size)
        .map(|element| {
            let value = header.dtype.value(element);
            u32::try_from(value).map_err(|_| format!("label {value} is not a class index (0 or more)"))
        })
        .collect()
}

/// Checks that `bytes` fit in `available` (what the array can hold at most) before anything
/// is allocated for them.
pub(crate) fn check_fits(bytes: usize, available: u64) -> Result<(), String> {
    if bytes as u64 > available {
        return Err(format!("truncated: the header promises {bytes} data bytes, the array can hold at most {available}"));
    }
    Ok(())
}

fn read_data(reader: &mut dyn Read, bytes: usize, available: u64) -> Result<Vec<u8>, String> {
    check_fits(bytes, available)?;
    let data = limits::read_up_to(reader, bytes)?;
    if data.len() != bytes {
        return Err(format!("truncated: the header promises {bytes} data bytes, the array holds {}", data.len()));
    }
    Ok(data)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
    /// Anything else (a list, for structured dtypes).
    Other,
}

/// Parses the header's dict literal: string keys; values that are strings, `True`/`False`,
/// tuples of integers, or (skipped, as `Other`) bracketed lists.
fn parse_dict(text: &str) -> Result<HashMap<String, Value>, String> {
    let mut parser = Parser { chars: text.trim().chars().collect(), at: 0 };
    parser.expect('{')?;
    let mut dict = HashMap::new();
    loop {
        parser.skip_spaces();
        if parser.eat('}') {
            return Ok(dict);
        }
        let key = parser.string()?;
        parser.skip_spaces();
        parser.expect(':')?;
        parser.skip_spaces();
        let value = parser.value()?;
        dict.insert(key, value);
        parser.skip_spaces();
        if !parser.eat(',') {
            parser.skip_spaces();
            parser.expect('}')?;
            return Ok(dict);
        }
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }
    fn eat(&mut self, wanted: char) -> bool {
        let found = self.peek() == Some(wanted);
        if found {
            self.at += 1;
        }
        found
    }
    fn expect(&mut self, wanted: char) -> Result<(), String> {
        if self.eat(wanted) { Ok(()) } else { Err(format!("expected {wanted:?} at character {}", self.at)) }
    }
    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }
    fn string(&mut self) -> Result<String, String> {
        let quote = match self.peek() {
            Some(quote @ ('\'' | '"')) => quote,
            _ => return Err(format!("expected a quoted string at character {}", self.at)),
        };
        self.at += 1;
        let start = self.at;
        while self.peek().is_some_and(|c| c != quote) {
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().collect();
        self.expect(quote)?;
        Ok(text)
    }
    fn word(&mut self) -> String {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }
    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some('\'' | '"') => Ok(Value::Str(self.string()?)),
            Some('(') => {
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_spaces();
                    if self.eat(')') {
                        return Ok(Value::Tuple(items));
                    }
                    // Python 2 wrote longs with an `L` suffix.
                    let word = self.word();
                    let number = word.trim_end_matches('L');
                    items.push(number.parse().map_err(|_| format!("shape entry {word:?} is not a size"))?);
                    self.skip_spaces();
                    if !self.eat(',') {
                        self.skip_spaces();
                        self.expect(')')?;
                        return Ok(Value::Tuple(items));
                    }
                }
            }
            Some('[') => {
                let mut depth = 0;
                while let Some(c) = self.peek() {
                    self.at += 1;
                    match c {
                        '[' => depth += 1,
                        ']' if depth == 1 => return Ok(Value::Other),
                        ']' => depth -= 1,
                        _ => {}
                    }
                }
                Err("unclosed [".into())
            }
            _ => match self.word().as_str() {
                "True" => Ok(Value::Bool(true)),
                "False" => Ok(Value::Bool(false)),
                other => Err(format!("unexpected value {other:?} at character {}", self.at)),
            },
        }
    }
}

/// Writes a version 1 `.npy` array.
pub(crate) fn encode(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_text = match shape {
        [single] => format!("({single},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    // NumPy pads with spaces so that the data starts on a 64-byte boundary, ending in '\n'.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_as_numpy_writes_them() {
        let bytes = encode("|u1", &[3, 2, 2], &[7; 12]);
        let mut reader = &bytes[..];
        let header = read_header(&mut reader).unwrap();
        assert_eq!(header.shape, vec![3, 2, 2]);
        assert_eq!(read_u8(&mut reader, &header, u64::MAX).unwrap(), vec![7; 12]);
    }

    #[test]
    fn reads_integer_labels_of_any_width_and_order() {
        let little: Vec<u8> = [3i64, 0, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
        let bytes = encode("<i8", &[3, 1], &little);
        let mut reader = &bytes[..];
        let header = read_header(&mut reader).unwrap();
        assert_eq!(read_labels(&mut reader, &header, u64::MAX).unwrap(), vec![3, 0, 9]);

        let big: Vec<u8> = [258u16, 1].iter().flat_map(|v| v.to_be_bytes()).collect();
        let bytes = encode(">u2", &[2], &big);
        let mut reader = &bytes[..];
        let header = read_header(&mut reader).unwrap();
        assert_eq!(read_labels(&mut reader, &header, u64::MAX).unwrap(), vec![258, 1]);
    }

    #[test]
    fn refuses_what_it_cannot_read_and_says_why() {
        let mut fortran = encode("|u1", &[2, 2], &[0; 4]);
        let at = fortran.windows(5).position(|w| w == b"False").unwrap();
        fortran[at..at + 5].copy_from_slice(b"True ");
        let err = read_header(&mut &fortran[..]).unwrap_err();
        assert!(err.contains("fortran_order is True"), "{err}");

        let floats = encode("<f4", &[2], &[0; 8]);
        let err = read_header(&mut &floats[..]).unwrap_err();
        assert!(err.contains("dtype \"<f4\" is not supported"), "{err}");

        let negative = encode("|i1", &[1], &[0xff]);
        let mut reader = &negative[..];
        let header = read_header(&mut reader).unwrap();
        let err = read_labels(&mut reader, &header, u64::MAX).unwrap_err();
        assert!(err.contains("label -1"), "{err}");

        let short = encode("|u1", &[4], &[1, 2]);
        let mut reader = &short[..];
        let header = read_header(&mut reader).unwrap();
        assert!(read_u8(&mut reader, &header, u64::MAX).unwrap_err().contains("truncated"));
    }

    #[test]
    fn float32_arrays_round_trip_and_other_dtypes_are_named() {
        let values = [1.5f32, -2.0, 0.25, 1e-8, 3.0, 4.0];
        let bytes = encode_f32_array(&[2, 3], &values);
        assert_eq!(read_f32_array(&bytes).unwrap(), (vec![2, 3], values.to_vec()));
        let ints = encode("<i8", &[1], &7i64.to_le_bytes());
        assert!(read_f32_array(&ints).unwrap_err().contains("\"<i8\" is not float32"));
        assert!(read_f32_array(&bytes[..bytes.len() - 4]).unwrap_err().contains("needs 24 data bytes, the file has 20"));
    }

    #[test]
    fn claims_beyond_memory_are_errors_not_panics() {
        // Elements times 4 overflowed (a panic) on the old code.
        let bytes = encode("<f4", &[1 << 62, 4], &[0; 16]);
        let err = read_f32_array(&bytes).unwrap_err();
        assert!(err.contains("needs more data bytes, the file has 16"), "{err}");
        // A version 2 header claiming 4 GiB of header text is not allocated.
        let mut long = b"\x93NUMPY\x02\x00".to_vec();
        long.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = read_header(&mut &long[..]).unwrap_err();
        assert!(err.contains("the header claims 4294967295 bytes; at most 65536 are read"), "{err}");
        // Data that cannot be there is not read, nor allocated.
        let bytes = encode("|u1", &[1 << 40], &[1, 2]);
        let mut reader = &bytes[..];
        let header = read_header(&mut reader).unwrap();
        let err = read_u8(&mut reader, &header, 2).unwrap_err();
        assert!(err.contains("promises 1099511627776 data bytes, the array can hold at most 2"), "{err}");
    }
}
