fn main() {
    println!("pushi-bench: not written yet");
}
