"""The screenshot OCR flow's rules: preprocessing, tesseract and layout thresholds."""

from __future__ import annotations

from dataclasses import dataclass

from loom_assets.stages.images import MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class OcrRules:
    """Every number of the screenshot OCR flow, with its reason. Bump `version` when one changes."""

    version: str = "1"

    # -- decoding (docs/messages.md#payload-fields: base64 PNG/JPEG, ~2 MB) --
    # 100 MP: 6x a 6K display (6016x3384 = 20 MP) and ~300 MB of RGB; anything larger is a
    # decompression bomb, not a screenshot.
    max_pixels: int = MAX_IMAGE_PIXELS

    # -- preprocessing (docs/flows/screenshot_ocr.md#text) --
    # Loom v2's enhance_contrast is the polarity normalisation below plus tesseract's own (Otsu)
    # binarisation, which a linear stretch would not change; convert_format: the page goes to
    # tesseract as an uncompressed BMP (lossless, and no PNG encode).
    max_side: int = 2048
    # Screen recordings (`device.video.screen.raw`): one frame every 2 s is read like a
    # screenshot (a UI changes in steps; the near-duplicate check below skips the frames in
    # between that did not change), at most 300 frames (10 minutes) per recording.
    video_frame_seconds: float = 2.0
    max_video_frames: int = 300
    # Upscale 2x (cubic) when the median height of the glyph-sized connected components of the
    # binarised page (<= 2048 px) is under 12 px. Those components are mostly lower-case letters,
    # so the median is about the x-height: ~9 px for the 13-16 px UI fonts of a 1x display,
    # ~15-19 px for a 2x (retina) one. Measured on the test page rendered at 0.8-2x (recall of
    # 120 words, 1x -> 2x): glyphs of 8-9 px 0.958-0.983 -> 0.992-1.000; glyphs of 12-19 px
    # 0.992-1.000 either way, for 25-50 % more time. docs/architecture.md#components: grayscale +
    # 2x + polarity took a synthetic screenshot from 36/45 to 43/45 words. Tesseract's LSTM reads
    # every line rescaled to 36 px; what small text loses is in the page binarisation and layout
    # analysis that run at the source resolution, where 1 px strokes break apart.
    small_text_px: float = 12.0
    upscale_factor: float = 2.0
    # Components counted for that estimate: 3-150 px tall, at most 4x wider than tall (no rules,
    # underlines or panel edges), at least 4 px of ink.
    glyph_height_range: tuple[int, int] = (3, 150)
    # A page whose median gray level is under 128 has a dark background: it is inverted so the
    # text is dark on light, the polarity tesseract's binarisation expects
    # (docs/architecture.md#components) ...
    dark_background_level: int = 128
    # ... and then each solid dark area of the page that can hold a line of text (a filled
    # button, a dark toolbar or sidebar: at least 2x the glyph height in both directions) is
    # inverted too, text included, so light-on-dark UI inside a light page reads as well.
    panel_size: float = 2.0
    # Text regions: morphological gradient (3x3), edges stronger than max(Otsu, 24 gray levels)
    # (24: well above JPEG noise, well below the weakest text contrast a UI uses), closed by a
    # horizontal kernel as wide as the estimated glyph height (joins letters and the ~0.3 em
    # word gaps into line boxes, never joins two lines), then contours -> boxes. Boxes 0.5x-8x
    # the glyph height tall and at least 35 % edge pixels are kept (photos and icons are lower).
    min_edge_contrast: int = 24
    region_height_range: tuple[float, float] = (0.5, 8.0)
    region_min_fill: float = 0.35
    # Orientation: off. A screenshot comes from the framebuffer, which the OS has already rotated
    # to the display's orientation, so it is upright by construction. When on, tesseract's OSD
    # runs on the <= 2048 px page (~0.6-0.8 s, about half an OCR pass) and its answer is taken
    # at orientation_conf >= 1.5 (measured on the test page: right answers at 1.6-8.2 for all four
    # rotations; OSD fails outright on pages with little text, which then stay at 0).
    detect_orientation: bool = False
    osd_min_confidence: float = 1.5

    # -- text extraction (docs/flows/screenshot_ocr.md#text: tesseract, confidence 0.6, 30 s) --
    # A setting (LOOM_SCREENSHOT_OCR_LANGUAGES): Loom v2's "eng, spa" needs tesseract-ocr-spa; the
    # default is what the image installs. Tesseract's own "+" syntax: "eng+spa".
    languages: str = "eng"
    # Page segmentation 11 (sparse text): every run of text is its own line, and `text_blocks`
    # rebuilds paragraphs from the boxes. Same words and time as 3 (fully automatic) on the test
    # screenshots (120/120), but 3's column analysis ran a sidebar item and a paragraph line into
    # one line on the dark-mode page; UI screens are sparse text, not book pages.
    psm: int = 11
    oem: int = 1                       # LSTM only: the engine eng.traineddata is trained for
    min_confidence: float = 0.6        # tesseract conf >= 60
    timeout_seconds: float = 30.0      # docs/flows/screenshot_ocr.md#text timeout

    # -- text postprocessing (docs/flows/screenshot_ocr.md#text) --
    # A line whose median word height is >= 1.3x the page's median word height is a heading
    # (typical UI/web type scales step 1.2-1.5x per level; body text wobbles < 10 % between
    # lines), when it has at most 12 words (a heading is short; a paragraph in a big font is not).
    heading_height_ratio: float = 1.3
    heading_max_words: int = 12
    # A line goes on the block above it when it starts within 0.8 line heights below that
    # block's last line (body line spacing is 1.2-1.6 em, so the gap between two lines' boxes is
    # 0.2-0.6 of a box; paragraph and list gaps are larger), is left- or centre-aligned with it
    # within 1 line height, and the word heights differ by < 25 %. Pieces of one visual line
    # (vertical overlap > 50 %) at most 2 word heights apart are one line (a word space is
    # ~0.5 word heights; table cells and sidebar-to-content gaps are wider).
    paragraph_gap: float = 0.8
    paragraph_indent: float = 1.0
    paragraph_height_tolerance: float = 0.25
    line_join_gap: float = 2.0

    # -- near duplicates (a screenshot every 10 s, mostly of an unchanged screen) --
    # dHash: 9x8 area-averaged thumbnail, 64 bits of "brighter than the cell to its left".
    # Measured on the 1280x800 test page (bits of 64 from the original): cursor blinked 0, JPEG
    # q70 re-encode 0, one word changed 0, heading changed 0, first paragraph replaced 1, both
    # replaced 6, scrolled by a line 7, page without its paragraphs 15, dark mode 44. Each cell
    # averages ~140x100 px, so the hash sees a screen's layout, not its words: "same text" and
    # "changed text" overlap at 0 bits and no threshold separates them. 0 is the least that still
    # catches the static screen (blinks, re-encodes), and the one that copies stale text least
    # often (every change that moves a cell's order is OCR'd). A near duplicate is compared with
    # the device's last OCR'd screenshot (whose text it copies), so drift cannot chain.
    # `skip_near_duplicates` False OCRs every screenshot (~0.7-1.5 s each on one core, 7-15 % of
    # a core per device at one screenshot per 10 s) when stale text is not acceptable.
    duplicate_max_distance: int = 0
    skip_near_duplicates: bool = True

    @property
    def tesseract_config(self) -> str:
        return f"--oem {self.oem} --psm {self.psm}"
