//! keel-ui's integration tests: pages over real HTTP (`pages`), and the MLflow
//! client's links opened in headless Chromium through WebDriver (`browser`).

mod browser;
mod pages;
mod util;
mod webdriver;
