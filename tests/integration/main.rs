mod fakes;
mod support;
