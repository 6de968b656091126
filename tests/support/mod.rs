pub mod hosts;
pub mod run;
pub mod templates;
