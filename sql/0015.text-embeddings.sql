-- depends: 0010.embeddings
-- Embeddings of the texts the device flows already hold, so `loom search` finds them too: the
-- transcripts (audio/transcripts) and the OCR text of screenshots (screenshot_ocr/text). Each
-- table keeps its source's retention and compression (sql/0006, sql/0008): a vector outliving
-- its text would link back to nothing.
SELECT loom_create_embedding_table('audio_embeddings', retention => interval '90 days',
                                   compress_after => interval '14 days');
SELECT loom_create_embedding_table('screenshot_ocr_embeddings', retention => interval '30 days',
                                   compress_after => interval '7 days');
