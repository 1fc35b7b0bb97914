-- depends: 0008.screenshot-ocr
-- Screen captures on device.video.screen.raw (docs/messages.md#unified-envelope,
-- docs/messages.md#payload-fields): a screenshot or a screen recording, whose frames every few
-- seconds are OCRed like screenshots.
ALTER TABLE screenshot_ocr_raw ALTER COLUMN image_data_uri DROP NOT NULL;
ALTER TABLE screenshot_ocr_raw ALTER COLUMN image_data_bytes DROP NOT NULL;
ALTER TABLE screenshot_ocr_raw ADD COLUMN video_data_uri text;
ALTER TABLE screenshot_ocr_raw ADD COLUMN video_data_bytes integer;
ALTER TABLE screenshot_ocr_raw ADD COLUMN duration double precision;
ALTER TABLE screenshot_ocr_raw ADD COLUMN fps double precision;
ALTER TABLE screenshot_ocr_text ADD COLUMN frame_seconds real;
