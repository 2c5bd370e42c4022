//! The HTML pages: the `/grant` consent flow, login and set-up, and the owner's console. Built
//! with `maud` ([`html`]); each page calls the node's operations, never an API handler.

pub mod account;
pub mod consent;
pub mod console;
pub mod console_grant;
pub mod dates;
pub mod grant_page;
pub mod html;
pub mod login;
pub mod words;
