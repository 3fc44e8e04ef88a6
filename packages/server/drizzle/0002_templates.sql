CREATE TABLE "template_build_logs" (
	"build_id" text NOT NULL,
	"seq" integer NOT NULL,
	"timestamp" timestamp with time zone NOT NULL,
	"level" text NOT NULL,
	"step" text,
	"message" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "template_builds" (
	"id" text PRIMARY KEY NOT NULL,
	"template_id" text NOT NULL,
	"status" text NOT NULL,
	"cpu_count" integer NOT NULL,
	"memory_mb" integer NOT NULL,
	"tags" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"definition" jsonb,
	"context" jsonb,
	"layers" jsonb,
	"reason" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "template_tags" (
	"template_id" text NOT NULL,
	"tag" text NOT NULL,
	"build_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "templates" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"name" text NOT NULL,
	"public" boolean DEFAULT false NOT NULL,
	"cpu_count" integer NOT NULL,
	"memory_mb" integer NOT NULL,
	"disk_size_mb" integer NOT NULL,
	"ready_build_id" text,
	"build_count" integer DEFAULT 0 NOT NULL,
	"spawn_count" bigint DEFAULT 0 NOT NULL,
	"last_spawned_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "template_build_logs" ADD CONSTRAINT "template_build_logs_build_id_template_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."template_builds"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "template_builds" ADD CONSTRAINT "template_builds_template_id_templates_id_fk" FOREIGN KEY ("template_id") REFERENCES "public"."templates"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "template_tags" ADD CONSTRAINT "template_tags_template_id_templates_id_fk" FOREIGN KEY ("template_id") REFERENCES "public"."templates"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "templates" ADD CONSTRAINT "templates_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "template_build_logs_idx" ON "template_build_logs" USING btree ("build_id","seq");--> statement-breakpoint
CREATE INDEX "template_builds_template_idx" ON "template_builds" USING btree ("template_id","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "template_tags_idx" ON "template_tags" USING btree ("template_id","tag");--> statement-breakpoint
CREATE UNIQUE INDEX "templates_team_name_idx" ON "templates" USING btree ("team_id","name");--> statement-breakpoint
CREATE INDEX "templates_public_idx" ON "templates" USING btree ("public");