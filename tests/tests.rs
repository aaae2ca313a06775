mod backfill_postgres;
mod backfill_run;
mod backfill_sample;
