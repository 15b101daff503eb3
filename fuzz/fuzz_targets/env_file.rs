//! `.env` files: any content is read or refused with a typed error, never quoted in the error
//! (it may hold the API key), and what is read loads or is reported without a panic.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use msbw_config::{WrapperConfig, read_env_file};

/// The file under test, in a directory of this process (libFuzzer exits without destructors,
/// so it is left in the temporary directory).
static FILE: OnceLock<std::path::PathBuf> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let path = FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("msbw-fuzz-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        dir.join("fuzz.env")
    });
    let mut file = std::fs::File::create(path).expect("create the file");
    file.write_all(data).expect("write the file");
    drop(file);
    match read_env_file(path) {
        Ok(vars) => {
            let _ = WrapperConfig::report_from_vars(vars);
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            // A distinctive line of the input must never appear in the error.
            for line in String::from_utf8_lossy(data).lines().filter(|l| l.len() >= 12) {
                assert!(!shown.contains(line), "the error quotes the file: {shown}");
            }
        }
    }
});
