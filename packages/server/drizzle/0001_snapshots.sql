CREATE TABLE "snapshots" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"name" text,
	"sandbox_id" text NOT NULL,
	"template_id" text NOT NULL,
	"node_id" text NOT NULL,
	"memory" boolean NOT NULL,
	"size_bytes" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "snapshots" ADD CONSTRAINT "snapshots_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "snapshots_team_name_idx" ON "snapshots" USING btree ("team_id","name");--> statement-breakpoint
CREATE INDEX "snapshots_team_created_idx" ON "snapshots" USING btree ("team_id","created_at");