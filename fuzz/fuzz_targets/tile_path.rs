//! Tile paths (`/registry/tile/…`) on arbitrary text: never a panic, and a parsed tile has
//! the height and bounds the route relies on.
#![no_main]

use grant_node::http::api::registry::parse_tile_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parts: Vec<&str> = text.split('/').collect();
    if let Some(tile) = parse_tile_path(&parts) {
        assert!(tile.width() >= 1 && tile.width() <= 256);
        assert!(tile.is_data() || tile.level() < 8);
        let end = ((u128::from(tile.level_index()) << 8) + u128::from(tile.width()))
            << (8 * u32::from(tile.level()));
        assert!(end > 0);
    }
});
