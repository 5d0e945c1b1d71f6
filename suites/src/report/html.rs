pub fn render(_: &super::matrix::Matrix, _: &std::path::Path) -> String {
    todo!()
}
