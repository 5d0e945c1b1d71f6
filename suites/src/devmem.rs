//! The `devmem` area. Its cases are not written yet; until they are, the area has no rows.

use crate::case::Case;

pub fn cases() -> Vec<Case> {
    Vec::new()
}
