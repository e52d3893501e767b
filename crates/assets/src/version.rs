//! Dotted version comparison for OS versions ("13.5.1" < "13.10" < "14").

use std::cmp::Ordering;

/// Compares dotted versions part by part. Missing or empty parts count as 0; numeric
/// parts compare by value (any length, leading zeros ignored); a non-numeric part sorts
/// after every numeric one and compares with other non-numeric parts as a string.
/// Keeping numeric and non-numeric parts in separate ranks is what makes this a total
/// order: mixing the two comparisons would allow cycles ("2" < "10" < "1a" < "2").
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut left = a.trim().split('.');
    let mut right = b.trim().split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (l, r) => {
                let ord = compare_part(l.unwrap_or(""), r.unwrap_or(""));
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    match (numeric(a), numeric(b)) {
        (Some(x), Some(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// The significant digits of a numeric part ("" for zero), or `None` if not numeric.
fn numeric(part: &str) -> Option<&str> {
    part.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| part.trim_start_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn orders_os_versions_numerically() {
        assert_eq!(compare_versions("13.5.1", "13.10"), Ordering::Less);
        assert_eq!(compare_versions("13.10", "14"), Ordering::Less);
        assert_eq!(compare_versions("14", "14.0.0"), Ordering::Equal);
        assert_eq!(compare_versions("14.01", "14.1"), Ordering::Equal);
        assert_eq!(compare_versions("9", "10"), Ordering::Less);
        assert_eq!(compare_versions("13.", "13.0"), Ordering::Equal);
        assert_eq!(compare_versions(" 15.2 ", "15.2"), Ordering::Equal);
        assert_eq!(
            compare_versions("99999999999999999999999.1", "99999999999999999999999"),
            Ordering::Greater
        );
    }

    #[test]
    fn non_numeric_parts_sort_after_numbers_and_as_strings() {
        assert_eq!(compare_versions("14.beta", "14.9"), Ordering::Greater);
        assert_eq!(compare_versions("14.beta", "14.alpha"), Ordering::Greater);
        assert_eq!(compare_versions("2", "1a"), Ordering::Less);
        assert_eq!(compare_versions("10", "1a"), Ordering::Less);
    }

    fn version() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{0,3}(\\.[0-9]{0,3}){0,3}",
            "[0-9a-c.]{0,8}",
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn is_antisymmetric(a in version(), b in version()) {
            prop_assert_eq!(compare_versions(&a, &b), compare_versions(&b, &a).reverse());
            prop_assert_eq!(compare_versions(&a, &a), Ordering::Equal);
        }

        #[test]
        fn is_transitive(a in version(), b in version(), c in version()) {
            let v = [a, b, c];
            for (i, j, k) in [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)] {
                let (x, y, z) = (&v[i], &v[j], &v[k]);
                let xy = compare_versions(x, y);
                let yz = compare_versions(y, z);
                if xy != Ordering::Greater && yz != Ordering::Greater {
                    // x <= y <= z: then x <= z, strictly if either step is strict.
                    let expected = if xy == Ordering::Equal { yz } else { Ordering::Less };
                    prop_assert_eq!(compare_versions(x, z), expected, "{:?} {:?} {:?}", x, y, z);
                }
            }
        }
    }
}
