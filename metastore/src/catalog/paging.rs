//! Paging of listings, in one place: page sizes, keyset tokens, and cutting a `limit + 1`
//! fetch into a page and the next token. Tokens are opaque to clients: the last key of the
//! page (an id, a name, a version), never an offset, so a listing stays fast and stable as a
//! table grows.

use crate::error::{CatalogError, CatalogResult};
use crate::model::Page;

/// Checks a page size: 0 means the default, anything above the maximum is capped, and a
/// negative one is refused.
pub(super) fn page_size(requested: i32) -> CatalogResult<i64> {
    const DEFAULT: i64 = 1000;
    const MAX: i64 = 10_000;
    match requested {
        n if n < 0 => Err(CatalogError::InvalidArgument(format!(
            "page_size cannot be negative (got {n}); 0 means the default of {DEFAULT}, and at \
             most {MAX} items come per page"
        ))),
        0 => Ok(DEFAULT),
        n => Ok(i64::from(n).min(MAX)),
    }
}

/// Cuts a result fetched with `limit + 1` rows to `limit` and sets the next-page token from the
/// last item kept.
pub(super) fn paginate<T>(items: &mut Vec<T>, limit: i64, token: impl Fn(&T) -> String) -> Page<T> {
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_page_token = if more {
        items.last().map(&token).unwrap_or_default()
    } else {
        String::new()
    };
    Page {
        items: std::mem::take(items),
        next_page_token,
    }
}

/// Page tokens of id-ordered listings are the last id; "" starts at the beginning.
pub(super) fn parse_token(token: &str) -> CatalogResult<i64> {
    if token.is_empty() {
        return Ok(0);
    }
    token.parse().map_err(|_| bad_token())
}

pub(super) fn bad_token() -> CatalogError {
    CatalogError::InvalidArgument(
        "the page token is not one this service handed out; pass the next_page_token of the previous page".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(page_size(0).ok(), Some(1000));
        assert_eq!(page_size(5).ok(), Some(5));
        assert_eq!(page_size(i32::MAX).ok(), Some(10_000));
        assert!(matches!(
            page_size(-1),
            Err(CatalogError::InvalidArgument(_))
        ));
        assert!(matches!(
            page_size(i32::MIN),
            Err(CatalogError::InvalidArgument(_))
        ));
    }

    #[test]
    fn a_page_is_cut_at_its_limit_with_the_last_key_as_token() {
        let mut items = vec![1, 2, 3];
        let page = paginate(&mut items, 2, i32::to_string);
        assert_eq!(
            (page.items, page.next_page_token.as_str()),
            (vec![1, 2], "2")
        );
        let mut items = vec![1, 2];
        assert_eq!(paginate(&mut items, 2, i32::to_string).next_page_token, "");
        assert_eq!(parse_token("").ok(), Some(0));
        assert!(parse_token("x").is_err());
    }
}
