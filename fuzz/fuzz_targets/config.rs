//! The TOML configuration on arbitrary text: never a panic; a refusal is an error, and an
//! accepted file gives a configuration whose `Debug` (which redacts secrets) works.
#![no_main]

use grant_node::cli::ServeArgs;
use grant_node::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::from_text(ServeArgs::default(), text) {
        let _ = format!("{config:?}");
    }
});
