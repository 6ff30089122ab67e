//! Reading JSON request bodies field by field, with errors that name the
//! field and what it should be, never the value sent (it may be a
//! plaintext or a secret).

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::ApiError;

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
/// Standard base64, padded or not.
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
/// URL-safe base64, padded or not.
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Standard, padded base64 (every response's bytes).
pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard or URL-safe base64, padded or not.
pub(crate) fn unb64(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .map_err(|_| ApiError::invalid(format!("{field}: not base64")))
}

/// The body as a JSON object; an empty body is `{}`. A body needs
/// `Content-Type: application/json`.
pub(crate) fn parse_object(headers: &http::HeaderMap, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    let json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::invalid("Content-Type must be application/json")
            .with_status(http::StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("the body must be a JSON object")),
        // The position only: serde_json's text may quote the input.
        Err(e) => Err(ApiError::invalid(format!("body is not valid JSON (line {}, column {})", e.line(), e.column()))),
    }
}

/// The fields of a request body, taken one by one. On `/v1` a field left
/// over is refused by [`Fields::finish`]; the compatible paths ignore
/// fields they don't know, as their clients may send more.
pub(crate) struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    pub(crate) fn new(map: Map<String, Value>) -> Self {
        Self { map }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        match self.map.remove(name) {
            None | Some(Value::Null) => None,
            Some(value) => Some(value),
        }
    }

    /// A string field, if present.
    pub(crate) fn text(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid(format!("{name}: expected a string"))),
        }
    }

    /// A string field that must be present.
    pub(crate) fn required_text(&mut self, name: &str) -> Result<String, ApiError> {
        self.text(name)?.ok_or_else(|| ApiError::invalid(format!("{name} is required")))
    }

    /// A base64 field, if present, decoded into wiped memory.
    pub(crate) fn bytes(&mut self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => unb64(name, &Zeroizing::new(s)).map(|b| Some(Zeroizing::new(b))),
            Some(_) => Err(ApiError::invalid(format!("{name}: expected a base64 string"))),
        }
    }

    /// A base64 field that must be present.
    pub(crate) fn required_bytes(&mut self, name: &str) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        self.bytes(name)?.ok_or_else(|| ApiError::invalid(format!("{name} is required")))
    }

    /// A base64 field; absent is empty.
    pub(crate) fn bytes_or_empty(&mut self, name: &str) -> Result<Vec<u8>, ApiError> {
        Ok(self.bytes(name)?.map(|b| b.to_vec()).unwrap_or_default())
    }

    /// An unsigned 32-bit number; absent is 0.
    pub(crate) fn u32_or_zero(&mut self, name: &str) -> Result<u32, ApiError> {
        match self.take(name) {
            None => Ok(0),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| ApiError::invalid(format!("{name}: expected a whole number 0..=4294967295"))),
            Some(_) => Err(ApiError::invalid(format!("{name}: expected a number"))),
        }
    }

    /// A list of objects, each read with `item`.
    pub(crate) fn objects<T>(
        &mut self,
        name: &str,
        mut item: impl FnMut(Fields) -> Result<T, ApiError>,
    ) -> Result<Vec<T>, ApiError> {
        match self.take(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(values)) => values
                .into_iter()
                .enumerate()
                .map(|(i, value)| match value {
                    Value::Object(map) => item(Fields::new(map)).map_err(|e| e.in_item(name, i)),
                    _ => Err(ApiError::invalid(format!("{name}[{i}]: expected an object"))),
                })
                .collect(),
            Some(_) => Err(ApiError::invalid(format!("{name}: expected a list"))),
        }
    }

    /// Refuses the fields no one took (`/v1`), naming the first.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(name) => Err(ApiError::invalid(format!("unknown field `{}`", printable(name)))),
        }
    }
}

/// A field name as it may appear in a message: at most 64 plain
/// characters (a client could send anything as a name).
fn printable(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_graphic()).take(64).collect()
}

/// The query parameters of a request, taken one by one like [`Fields`].
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(crate) fn new(query: Option<&str>) -> Self {
        let pairs = query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (p.to_owned(), String::new()),
            })
            .collect();
        Self { pairs }
    }

    /// An unsigned 32-bit parameter; absent is 0.
    pub(crate) fn u32_or_zero(&mut self, name: &str) -> Result<u32, ApiError> {
        let Some(i) = self.pairs.iter().position(|(k, _)| k == name) else { return Ok(0) };
        let (_, value) = self.pairs.remove(i);
        value.parse().map_err(|_| ApiError::invalid(format!("{name}: expected a whole number 0..=4294967295")))
    }

    /// Refuses parameters no one took (`/v1`).
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        match self.pairs.first() {
            None => Ok(()),
            Some((name, _)) => Err(ApiError::invalid(format!("unknown query parameter `{}`", printable(name)))),
        }
    }
}

impl ApiError {
    /// The error of one item of a list, prefixed with where it is.
    fn in_item(self, list: &str, index: usize) -> Self {
        Self { message: format!("{list}[{index}]: {}", self.message), ..self }
    }
}
