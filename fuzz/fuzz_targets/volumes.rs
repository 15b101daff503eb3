//! The volume parser (`MSB_SHARED_VOLUME_PATH`): any text parses or is refused entry by entry,
//! and whatever parses formats back to itself, one by one and as a list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msbw_config::{VolumeMapping, format_volume_mappings, parse_volume_mappings};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_volume_mappings(&text) {
        Ok(list) => {
            for m in &list {
                let again: VolumeMapping = m.to_string().parse().expect("a mapping's Display parses");
                assert_eq!(&again, m);
            }
            assert_eq!(parse_volume_mappings(&format_volume_mappings(&list)), Ok(list));
        }
        Err(errors) => assert!(!errors.is_empty(), "a refusal names at least one entry"),
    }
});
