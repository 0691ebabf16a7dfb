pub mod event;
pub mod protocol;
pub mod state;
