//! Prints the JSON Schema of `ship.yaml`: `cargo run -p ship-render --bin ship-schema > docs/ship.schema.json`.

fn main() {
    match serde_json::to_string_pretty(&ship_render::config::json_schema()) {
        Ok(text) => println!("{text}"),
        Err(err) => {
            eprintln!("ship-schema: {err}");
            std::process::exit(1);
        }
    }
}
