import type { ComponentType } from "react";
import type { Route } from "../router";

/** The engine groups of the navigation, in the order they are shown. */
export const GROUPS = [
  "Overview",
  "Profiles",
  "Recommendations",
  "Personalization",
  "Experiments",
  "Optimization",
  "Campaigns",
  "Models",
  "Analytics",
  "Content",
] as const;
export type Group = (typeof GROUPS)[number];

export interface PageProps {
  route: Route;
}

/** One page of the console: its hash path (`/overview`), its nav group, title and component. */
export interface PageEntry {
  path: string;
  group: Group;
  title: string;
  component: ComponentType<PageProps>;
}
