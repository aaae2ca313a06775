mod backfill_postgres;
mod backfill_sample;
