CREATE TABLE "api_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"name" text NOT NULL,
	"key_hash" text NOT NULL,
	"key_prefix" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_used_at" timestamp with time zone,
	CONSTRAINT "api_keys_key_hash_unique" UNIQUE("key_hash")
);
--> statement-breakpoint
CREATE TABLE "sandboxes" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"template_id" text NOT NULL,
	"alias" text,
	"node_id" text NOT NULL,
	"state" text NOT NULL,
	"cpu_count" integer NOT NULL,
	"memory_mb" integer NOT NULL,
	"disk_size_mb" integer NOT NULL,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"envd_version" text NOT NULL,
	"envd_access_token" text NOT NULL,
	"traffic_access_token" text,
	"allow_internet_access" boolean,
	"network" jsonb,
	"on_timeout" text DEFAULT 'kill' NOT NULL,
	"auto_resume" boolean DEFAULT false NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"end_at" timestamp with time zone NOT NULL,
	"ended_at" timestamp with time zone,
	"error" text
);
--> statement-breakpoint
CREATE TABLE "teams" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"operator" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sandboxes" ADD CONSTRAINT "sandboxes_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "api_keys_team_idx" ON "api_keys" USING btree ("team_id");--> statement-breakpoint
CREATE INDEX "sandboxes_team_state_idx" ON "sandboxes" USING btree ("team_id","state");--> statement-breakpoint
CREATE INDEX "sandboxes_started_idx" ON "sandboxes" USING btree ("started_at");