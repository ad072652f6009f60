//! Typed access to GGUF metadata: each getter names the file and the key when the value is
//! missing or of the wrong type.

use super::reader::GgufFile;
use super::value::Value;
use crate::Result;

impl GgufFile {
    fn wrong(&self, key: &str, want: &str, v: &Value) -> crate::Error {
        self.error(format!("metadata `{key}`: expected {want}, found {}", v.describe()))
    }

    fn missing(&self, key: &str) -> crate::Error {
        self.error(format!("metadata `{key}` is missing"))
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.get(key)
            .map(|v| v.as_usize().ok_or_else(|| self.wrong(key, "a non-negative integer", v)))
            .transpose()
    }

    pub fn req_usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| self.missing(key))
    }

    /// An integer that is a token id (u32).
    pub fn opt_token_id(&self, key: &str) -> Result<Option<u32>> {
        self.get(key)
            .map(|v| {
                v.as_int().and_then(|i| u32::try_from(i).ok()).ok_or_else(|| self.wrong(key, "a token id", v))
            })
            .transpose()
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key).map(|v| v.as_f64().ok_or_else(|| self.wrong(key, "a number", v))).transpose()
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key).map(|v| v.as_bool().ok_or_else(|| self.wrong(key, "a bool", v))).transpose()
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.get(key).map(|v| v.as_str().ok_or_else(|| self.wrong(key, "a string", v))).transpose()
    }

    pub fn req_str(&self, key: &str) -> Result<&str> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    fn array_of<'a, T>(
        &'a self,
        key: &str,
        want: &str,
        f: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let items = v.as_array().ok_or_else(|| self.wrong(key, want, v))?;
        let mut out = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            out.push(f(it).ok_or_else(|| {
                self.error(format!("metadata `{key}` element {i}: expected {want}, found {}", it.describe()))
            })?);
        }
        Ok(Some(out))
    }

    pub fn opt_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        self.array_of(key, "an array of strings", |v| v.as_str())
    }

    pub fn opt_f64_array(&self, key: &str) -> Result<Option<Vec<f64>>> {
        self.array_of(key, "an array of numbers", |v| v.as_f64())
    }

    pub fn opt_int_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        self.array_of(key, "an array of integers", |v| v.as_int().and_then(|i| i64::try_from(i).ok()))
    }

    pub fn opt_bool_array(&self, key: &str) -> Result<Option<Vec<bool>>> {
        self.array_of(key, "an array of bools", |v| v.as_bool())
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.req_str("general.architecture")
    }
}
