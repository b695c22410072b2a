// Every page of the console. The nav, the router and the browser tests (tests/e2e/test_console.py
// reads window.auraConsolePages) all take the list from here.
import { corePages } from "./core";
import { morePages } from "./more";
import { GROUPS, type PageEntry } from "./types";

export const pages: PageEntry[] = [...corePages, ...morePages];

export function findPage(path: string): PageEntry | undefined {
  return pages.find((p) => p.path === path);
}

export function pagesByGroup(): { group: string; pages: PageEntry[] }[] {
  return GROUPS.map((group) => ({ group, pages: pages.filter((p) => p.group === group) })).filter(
    (g) => g.pages.length > 0,
  );
}
