// The app shell: Polaris Frame with a top bar (dark mode toggle, sign out), the navigation (one
// section per engine group, from the page registry), a banner for API errors and another for a
// degraded dependency (polled from the open /v1/health), and the current page from the hash route.
import { AppProvider, Banner, Frame, Navigation, Page, Text, TopBar } from "@shopify/polaris";
import en from "@shopify/polaris/locales/en.json";
import { useCallback, useEffect, useState } from "react";
import { ApiError, api, clearKey, getKey, onApiError, type Health } from "./api";
import { findPage, pages, pagesByGroup } from "./pages/registry";
import { href, navigate, useRoute } from "./router";
import { SignIn } from "./SignIn";

const THEME_STORAGE = "aura.console.theme";

declare global {
  interface Window {
    auraConsolePages?: { path: string; group: string; title: string }[];
  }
}
window.auraConsolePages = pages.map(({ path, group, title }) => ({ path, group, title }));

function DegradedBanner({ health }: { health: Health | undefined }) {
  if (!health || health.status === "ok") return null;
  const down = Object.entries(health.dependencies)
    .filter(([, d]) => !d.ok)
    .map(([name, d]) => `${name}${d.error ? ` (${d.error})` : ""}`);
  return (
    <Banner tone={health.status === "down" ? "critical" : "warning"} title={`The platform is ${health.status}`}>
      <p>Unavailable: {down.join(", ")}. Pages that need these show the last data or an error.</p>
    </Banner>
  );
}

export function Shell({ dark, setDark }: { dark: boolean; setDark: (d: boolean) => void }) {
  const route = useRoute();
  const [signedIn, setSignedIn] = useState(() => Boolean(getKey()));
  const [error, setError] = useState<ApiError | null>(null);
  const [health, setHealth] = useState<Health>();
  const [navOpen, setNavOpen] = useState(false);

  useEffect(
    () =>
      onApiError((err) => {
        if (err.status === 401) {
          clearKey();
          setSignedIn(false);
        }
        setError(err);
      }),
    [],
  );

  useEffect(() => {
    let alive = true;
    let timer: ReturnType<typeof setTimeout>;
    const poll = async () => {
      try {
        const h = await api.health();
        if (alive) setHealth(h);
      } catch {
        if (alive) setHealth({ status: "down", dependencies: { api: { ok: false, error: "no answer" } } });
      }
      if (alive) timer = setTimeout(poll, 10_000);
    };
    void poll();
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  }, []);

  useEffect(() => setError(null), [route.path]);
  const toggleNav = useCallback(() => setNavOpen((o) => !o), []);

  if (!signedIn) return <SignIn onSignedIn={() => setSignedIn(true)} />;

  const page = findPage(route.path) ?? (route.path === "/" ? pages[0] : undefined);
  const Component = page?.component;

  const topBar = (
    <TopBar
      showNavigationToggle
      onNavigationToggle={toggleNav}
      secondaryMenu={
        <div className="aura-topbar-actions">
          <button type="button" className="aura-link-button" onClick={() => setDark(!dark)} aria-pressed={dark}>
            {dark ? "Light mode" : "Dark mode"}
          </button>
          <button
            type="button"
            className="aura-link-button"
            onClick={() => {
              clearKey();
              setSignedIn(false);
            }}
          >
            Sign out
          </button>
        </div>
      }
    />
  );

  const navigation = (
    <Navigation location={page ? href(page.path) : ""}>
      {pagesByGroup().map(({ group, pages: items }) => (
        <Navigation.Section
          key={group}
          title={group}
          items={items.map((p) => ({
            url: href(p.path),
            label: p.title,
            selected: page?.path === p.path,
            onClick: () => setNavOpen(false),
          }))}
        />
      ))}
    </Navigation>
  );

  return (
    <Frame
      topBar={topBar}
      navigation={navigation}
      showMobileNavigation={navOpen}
      onNavigationDismiss={toggleNav}
      skipToContentTarget={undefined}
    >
      <div className="aura-banners">
        <DegradedBanner health={health} />
        {error && (
          <Banner
            tone="critical"
            title={`API error${error.status ? ` ${error.status}` : ""}`}
            onDismiss={() => setError(null)}
          >
            <p>{error.message}</p>
          </Banner>
        )}
      </div>
      {Component ? (
        <Component key={page.path} route={route} />
      ) : (
        <Page title="Not found">
          <Text as="p">
            No page at {route.path}. <a href={href(pages[0].path)}>Go to {pages[0].title}</a>
          </Text>
        </Page>
      )}
    </Frame>
  );
}

export function App() {
  const [dark, setDarkState] = useState(() => {
    const saved = window.localStorage.getItem(THEME_STORAGE);
    if (saved) return saved === "dark";
    return window.matchMedia?.("(prefers-color-scheme: dark)").matches ?? false;
  });
  const setDark = (d: boolean) => {
    window.localStorage.setItem(THEME_STORAGE, d ? "dark" : "light");
    setDarkState(d);
  };
  useEffect(() => {
    document.documentElement.dataset.theme = dark ? "dark" : "light";
  }, [dark]);
  return (
    <AppProvider i18n={en} theme={dark ? "dark-experimental" : "light"}>
      <Shell dark={dark} setDark={setDark} />
    </AppProvider>
  );
}

export { navigate };
