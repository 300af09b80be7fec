//! Building R character vectors quickly and safely.
//!
//! R interns every string in a global cache, so each new R string costs a hash lookup and an
//! allocation inside R, and that, not Parquet, dominates reading text columns. Columns repeat
//! values a lot (that is why they compress), so each distinct value of a column is made into
//! an R string once and reused, found through a fast Rust hash map (a lookup costs a few
//! percent of what R's costs). A column whose values almost never repeat (under 1% in the
//! first 65,536) stops using the map.
//!
//! R refuses strings with an embedded NUL by long-jumping, which must never cross Rust frames;
//! such values are checked for first and reported as an error.
#![allow(unsafe_code)]

use crate::errors::{BindingError, Outcome};
use extendr_api::prelude::*;
use extendr_ffi::{R_NaString, R_xlen_t, Rf_mkCharLenCE, SET_STRING_ELT, SEXP, SEXPTYPE, cetype_t};
use foldhash::fast::FixedState;
use std::collections::HashMap;

/// Values looked up before deciding whether a column repeats enough (1%) to keep the map.
const SAMPLE: usize = 1 << 16;

/// A character vector of `len` values (None: NA).
pub fn character_vector<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    len: usize,
) -> Outcome<Robj> {
    // R fills a new character vector with "" itself.
    let mut out = Robj::alloc_vector(SEXPTYPE::STRSXP, len);
    let mut made: HashMap<&str, SEXP, FixedState> = HashMap::default();
    let (mut caching, mut lookups, mut hits) = (true, 0usize, 0usize);
    // SAFETY: `out` stays alive (and protected) for the whole loop.
    let target = unsafe { out.get_mut() };
    single_threaded(|| {
        for (index, value) in values.take(len).enumerate() {
            let string = match value {
                None => na_string(),
                Some(text) if caching => {
                    lookups += 1;
                    match made.get(text) {
                        Some(string) => {
                            hits += 1;
                            *string
                        }
                        None => {
                            let string = make(text)?;
                            made.insert(text, string);
                            string
                        }
                    }
                }
                Some(text) => make(text)?,
            };
            if lookups == SAMPLE && hits * 100 < lookups {
                caching = false;
                made = HashMap::default();
            }
            // SAFETY: `out` is a protected character vector of `len` elements and
            // `index < len`; `string` is a CHARSXP, stored before anything else allocates.
            unsafe { SET_STRING_ELT(target, index as R_xlen_t, string) };
        }
        Ok(out)
    })
}

fn na_string() -> SEXP {
    // SAFETY: R_NaString is R's constant NA string, set up before any package loads.
    unsafe { R_NaString }
}

/// One R string (CHARSXP) from UTF-8 text.
fn make(text: &str) -> Outcome<SEXP> {
    let length = i32::try_from(text.len()).map_err(|_| {
        BindingError::Data("a string is longer than R's limit of 2^31 - 1 bytes".to_owned())
    })?;
    if text.as_bytes().contains(&0) {
        return Err(BindingError::Data(format!(
            "the string {:?} contains a NUL character, which R strings cannot hold",
            text.chars().take(40).collect::<String>()
        )));
    }
    // SAFETY: the pointer and length describe valid UTF-8 without NUL, so R does not error
    // (and so never long-jumps); the caller stores the result at once.
    Ok(unsafe { Rf_mkCharLenCE(text.as_ptr().cast(), length, cetype_t::CE_UTF8) })
}
