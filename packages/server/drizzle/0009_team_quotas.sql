CREATE TABLE "rate_buckets" (
	"key_id" text PRIMARY KEY NOT NULL,
	"rate" integer NOT NULL,
	"tokens" double precision NOT NULL,
	"allowed" boolean NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "max_sandboxes" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "max_vcpus" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "max_memory_mib" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "max_disk_mib" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "creates_per_minute" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "requests_per_second" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "max_lifetime_s" integer;--> statement-breakpoint
ALTER TABLE "rate_buckets" ADD CONSTRAINT "rate_buckets_key_id_api_keys_id_fk" FOREIGN KEY ("key_id") REFERENCES "public"."api_keys"("id") ON DELETE cascade ON UPDATE no action;