pub mod filter;
pub mod flow;
pub mod pcap;
pub mod protocol;
pub mod render;
pub mod wire;
