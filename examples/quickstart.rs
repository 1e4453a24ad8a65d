//! levee quickstart: runs with no Redis.
fn main() {
    println!("levee quickstart");
}
