CREATE TABLE "usage_records" (
	"sandbox_id" text NOT NULL,
	"team_id" text NOT NULL,
	"template_id" text NOT NULL,
	"state" text NOT NULL,
	"interval_start" timestamp with time zone NOT NULL,
	"interval_end" timestamp with time zone NOT NULL,
	"vcpus" integer NOT NULL,
	"vcpu_seconds" double precision NOT NULL,
	"memory_gib_seconds" double precision NOT NULL,
	"disk_gib_seconds" double precision NOT NULL,
	"cpu_seconds" double precision NOT NULL,
	"peak_memory_bytes" bigint,
	"egress_bytes" bigint
);
--> statement-breakpoint
ALTER TABLE "usage_records" ADD CONSTRAINT "usage_records_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "usage_records_sandbox_start_idx" ON "usage_records" USING btree ("sandbox_id","interval_start");--> statement-breakpoint
CREATE INDEX "usage_records_team_start_idx" ON "usage_records" USING btree ("team_id","interval_start");--> statement-breakpoint
CREATE INDEX "usage_records_start_idx" ON "usage_records" USING btree ("interval_start");