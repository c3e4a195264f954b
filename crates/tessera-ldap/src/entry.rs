//! Search result entries (RFC 4511 §4.5.2 `SearchResultEntry`) decoded without panicking.
//!
//! `ldap3::SearchEntry::construct` panics on an entry it cannot decode (a non-UTF-8 DN, a
//! malformed attribute list). The directory is not trusted that far: a broken entry becomes an
//! error of this login, never a panic on the request path.

use std::collections::HashMap;

use ldap3::asn1::StructureTag;
use ldap3::{ResultEntry, SearchEntry};

/// Decode `entry` as `SearchEntry::construct` would, or say what is wrong with it.
pub(crate) fn search_entry(entry: ResultEntry) -> Result<SearchEntry, String> {
    let mut parts = entry
        .0
        .match_id(4)
        .and_then(StructureTag::expect_constructed)
        .ok_or("not a SearchResultEntry")?
        .into_iter();
    let dn = utf8(parts.next(), "objectName")?;
    let attributes = parts
        .next()
        .and_then(StructureTag::expect_constructed)
        .ok_or("attribute list missing")?;
    let mut attrs: HashMap<String, Vec<String>> = HashMap::new();
    let mut bin_attrs: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for attribute in attributes {
        let mut pair = attribute
            .expect_constructed()
            .ok_or("attribute is not a sequence")?
            .into_iter();
        let name = utf8(pair.next(), "attribute type")?;
        let values: Vec<Vec<u8>> = pair
            .next()
            .and_then(StructureTag::expect_constructed)
            .ok_or_else(|| format!("attribute {name}: values missing"))?
            .into_iter()
            .map(|v| {
                v.expect_primitive()
                    .ok_or_else(|| format!("attribute {name}: a value is not an octet string"))
            })
            .collect::<Result<_, _>>()?;
        // As ldap3 does: all values text, or the attribute goes to the binary map.
        match values
            .iter()
            .map(|v| String::from_utf8(v.clone()))
            .collect::<Result<Vec<String>, _>>()
        {
            Ok(text) => {
                attrs.insert(name, text);
            }
            Err(_) => {
                bin_attrs.insert(name, values);
            }
        }
    }
    Ok(SearchEntry {
        dn,
        attrs,
        bin_attrs,
    })
}

fn utf8(tag: Option<StructureTag>, what: &str) -> Result<String, String> {
    let bytes = tag
        .and_then(StructureTag::expect_primitive)
        .ok_or_else(|| format!("{what} missing"))?;
    String::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use ldap3::asn1::{PL, TagClass};

    use super::*;

    fn prim(bytes: &[u8]) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload: PL::P(bytes.to_vec()),
        }
    }

    fn seq(id: u64, inner: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id,
            payload: PL::C(inner),
        }
    }

    fn entry(dn: &[u8], attrs: Vec<StructureTag>) -> ResultEntry {
        ResultEntry::new(seq(4, vec![prim(dn), seq(16, attrs)]))
    }

    fn attr(name: &[u8], values: &[&[u8]]) -> StructureTag {
        seq(
            16,
            vec![
                prim(name),
                seq(17, values.iter().map(|v| prim(v)).collect()),
            ],
        )
    }

    #[test]
    fn decodes_text_and_binary_attributes() {
        let e = search_entry(entry(
            b"uid=alice,dc=example",
            vec![
                attr(b"cn", &[b"Alice", b"A. Liddell"]),
                attr(b"jpegPhoto", &[b"\xff\xd8"]),
            ],
        ))
        .unwrap();
        assert_eq!(e.dn, "uid=alice,dc=example");
        assert_eq!(e.attrs["cn"], vec!["Alice", "A. Liddell"]);
        assert_eq!(e.bin_attrs["jpegPhoto"], vec![b"\xff\xd8".to_vec()]);
    }

    #[test]
    fn malformed_entries_are_errors_not_panics() {
        let cases: Vec<(ResultEntry, &str)> = vec![
            (entry(b"uid=\xff", vec![]), "objectName is not UTF-8"),
            (
                ResultEntry::new(seq(4, vec![prim(b"uid=a")])),
                "attribute list missing",
            ),
            (ResultEntry::new(prim(b"x")), "not a SearchResultEntry"),
            (
                entry(b"uid=a", vec![prim(b"cn")]),
                "attribute is not a sequence",
            ),
            (
                entry(b"uid=a", vec![seq(16, vec![prim(b"\xfe")])]),
                "attribute type is not UTF-8",
            ),
            (
                entry(b"uid=a", vec![seq(16, vec![prim(b"cn")])]),
                "attribute cn: values missing",
            ),
            (
                entry(
                    b"uid=a",
                    vec![seq(16, vec![prim(b"cn"), seq(17, vec![seq(16, vec![])])])],
                ),
                "attribute cn: a value is not an octet string",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(search_entry(e).unwrap_err(), want);
        }
    }
}
