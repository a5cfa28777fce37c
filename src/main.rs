fn main() {
    println!("distill: work in progress");
}
