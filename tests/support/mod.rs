pub mod hosts;
pub mod run;
