mod backfill_sample;
