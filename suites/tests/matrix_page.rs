//! The HTML matrix in a real browser: headless Chromium renders the page made from the
//! committed reports, and a measuring script reads what is visible (the summary inside the
//! screen, the sticky header and case column after scrolling the case table both ways, the
//! filters). Without Chromium the test says so and passes, except under CI (`CI` set), where
//! `.ci/run` installs it and its absence is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use zccheck::report::matrix::Matrix;

/// Runs after the page's own script; writes what it measured into `<pre id="measure">`.
const MEASURE: &str = r#"
<script>
// After load: a large page is laid out at its final window size only then.
window.addEventListener('load', function () {
  var r = { width: innerWidth, height: innerHeight };
  var sum = document.querySelector('table.summary').getBoundingClientRect();
  r.summary_right = sum.right; r.summary_bottom = sum.bottom;
  r.page_scroll_width = document.documentElement.scrollWidth;
  var legend = document.querySelector('#summary .legend').getBoundingClientRect();
  r.legend_bottom = legend.bottom; r.legend_height = legend.height;
  var box = document.querySelector('div.cases');
  box.scrollIntoView();
  box.scrollTop = 600; box.scrollLeft = 400;
  var b = box.getBoundingClientRect();
  r.box_scrolls = box.scrollTop > 0 && box.scrollLeft > 0;
  var th = box.querySelector('thead th:nth-child(3)').getBoundingClientRect();
  r.header_offset = th.top - b.top;
  var head = box.querySelector('thead th').getBoundingClientRect();
  var probe = function (y) {
    var el = document.elementFromPoint(b.left + 4, y);
    var cell = el && el.closest('td, th');
    return cell ? cell.className + '|' + (cell.closest('thead') ? 'head' : 'body') : 'none';
  };
  r.corner = probe(b.top + 4);
  r.left_under_header = probe(head.bottom + 12);
  r.left_lower = probe(b.top + b.height / 2);
  var form = document.getElementById('filters');
  r.filters_visible = !form.hidden && form.getBoundingClientRect().height > 0;
  var rows = box.querySelectorAll('tbody tr');
  var shown = function () { return Array.prototype.filter.call(rows, function (t) { return !t.hidden; }).length; };
  r.rows = rows.length;
  form.querySelector('select[name=outcome]').value = 'unsupported';
  form.dispatchEvent(new Event('change'));
  r.rows_unsupported = shown();
  form.querySelector('select[name=outcome]').value = '';
  form.querySelector('input[name=area][value=send]').checked = false;
  form.dispatchEvent(new Event('change'));
  r.rows_without_send = shown();
  var pre = document.createElement('pre');
  pre.id = 'measure';
  pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>
"#;

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// The page made from the committed reports, with the measuring script, written to `dir`.
fn page(dir: &Path) -> PathBuf {
    let reports = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/reports");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&reports)
        .expect("fixtures/reports")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let m = Matrix::load(&files).expect("the committed reports load");
    let html = zccheck::report::html::render(&m, dir);
    let html = html.replace("</body>", &format!("{MEASURE}</body>"));
    let file = dir.join("matrix.html");
    std::fs::write(&file, html).expect("writing the page");
    file
}

/// Renders `file` at `width`x`height` and returns what the measuring script saw.
fn measure(browser: &Path, dir: &Path, file: &Path, width: u32, height: u32) -> Value {
    let profile = dir.join(format!("profile-{width}"));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-extensions",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--window-size={width},{height}"),
            "--dump-dom",
        ])
        .arg(format!("file://{}", file.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    // Read while it runs: the DOM is larger than a pipe holds.
    let mut stdout = child.stdout.take().expect("chromium's stdout");
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut dom).map(|_| dom)
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("waiting for chromium").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish rendering in 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let dom = reader
        .join()
        .expect("the reader thread")
        .expect("chromium's output");
    let start = dom
        .find("<pre id=\"measure\">")
        .unwrap_or_else(|| panic!("the measuring script did not run:\n{dom}"));
    let json = &dom[start + "<pre id=\"measure\">".len()..];
    let json = &json[..json.find("</pre>").expect("end of the measure")];
    let json = json.replace("&quot;", "\"").replace("&amp;", "&");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

#[test]
fn the_matrix_page_reads_well_in_a_browser() {
    let Some(browser) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed: .ci/run installs the Debian package `chromium`");
        }
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium); the page was not checked in a browser");
        return;
    };
    let dir = std::env::temp_dir().join(format!("zccheck-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = page(&dir);

    let wide = measure(&browser, &dir, &file, 1400, 900);
    // (--dump-dom gives the window its width; the height it reports is the window's less
    // what headless reserves, so the summary is held to the screenshot's 900 px.)
    assert_eq!(f(&wide, "width"), 1400.0, "{wide}");
    // The whole summary and its legend on the first screen, no horizontal scrolling.
    assert!(f(&wide, "summary_right") <= 1400.0, "{wide}");
    assert!(f(&wide, "summary_bottom") <= 900.0, "{wide}");
    assert!(
        f(&wide, "legend_height") > 0.0 && f(&wide, "legend_bottom") <= 900.0,
        "{wide}"
    );
    assert!(f(&wide, "page_scroll_width") <= 1400.0, "{wide}");
    // The case table scrolled both ways: its header is still at the top of its box, and its
    // case column at the left, above the other cells and below the header.
    assert_eq!(wide["box_scrolls"], true, "{wide}");
    assert!(f(&wide, "header_offset").abs() <= 1.0, "{wide}");
    assert_eq!(wide["corner"], "case|head", "{wide}");
    assert_eq!(wide["left_under_header"], "case|body", "{wide}");
    assert_eq!(wide["left_lower"], "case|body", "{wide}");
    // The filters show and work.
    assert_eq!(wide["filters_visible"], true, "{wide}");
    let rows = f(&wide, "rows");
    let unsupported = f(&wide, "rows_unsupported");
    assert!(unsupported > 0.0 && unsupported < rows, "{wide}");
    let without_send = f(&wide, "rows_without_send");
    assert!(without_send > 0.0 && without_send < rows, "{wide}");

    // A phone: the summary fits its width. (500 px is the narrowest window headless Chromium
    // makes; the page switches to its phone layout below 720 px.)
    let phone = measure(&browser, &dir, &file, 500, 900);
    let width = f(&phone, "width");
    assert!(width <= 500.0, "{phone}");
    assert!(f(&phone, "summary_right") <= width, "{phone}");
    assert!(f(&phone, "page_scroll_width") <= width, "{phone}");
    std::fs::remove_dir_all(&dir).ok();
}
