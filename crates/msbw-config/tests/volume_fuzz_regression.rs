//! Inputs the volume fuzz target found (fuzz/fuzz_targets/volumes.rs), kept as tests of its
//! properties: any text parses or is refused entry by entry, and what parses formats back.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use msbw_config::{VolumeMapping, format_volume_mappings, parse_volume_mappings};

fn round_trips(text: &str) {
    match parse_volume_mappings(text) {
        Ok(list) => {
            for m in &list {
                let again: VolumeMapping = m
                    .to_string()
                    .parse()
                    .unwrap_or_else(|e| panic!("{m} does not parse: {e:?}"));
                assert_eq!(&again, m);
            }
            assert_eq!(
                parse_volume_mappings(&format_volume_mappings(&list)),
                Ok(list),
                "{text:?}"
            );
        }
        Err(errors) => assert!(!errors.is_empty(), "a refusal names at least one entry"),
    }
}

#[test]
fn found_by_the_fuzzer() {
    let bytes = b"/at:/sejdb\xff[\"\\\"a& \xff\xff\"\xff /";
    round_trips(&String::from_utf8_lossy(bytes));
}

#[test]
fn a_last_part_ending_in_white_space_is_refused() {
    let errors = parse_volume_mappings(r#"["/data:/sandbox/a /"]"#).unwrap_err();
    assert!(errors[0].to_string().contains("ends with white space"), "{errors:?}");
    // Inside a path, white space stays.
    assert_eq!(
        parse_volume_mappings(r#"["/data:/sandbox/a b/c"]"#).unwrap()[0].container_path,
        "/sandbox/a b/c"
    );
}
