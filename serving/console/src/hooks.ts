// Data hooks of the pages: load once (useApi) or keep refreshing (usePoll, every few seconds while
// the page is open). A failure is kept per hook so the page can show it where the data would be.
import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError } from "./api";

export interface Loaded<T> {
  data: T | undefined;
  error: ApiError | null;
  loading: boolean;
  reload: () => void;
  /** when the data last arrived (epoch ms) */
  at: number | null;
}

export function usePoll<T>(load: () => Promise<T>, intervalMs: number | null, deps: unknown[] = []): Loaded<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);
  const [at, setAt] = useState<number | null>(null);
  const [tick, setTick] = useState(0);
  const alive = useRef(true);
  const reload = useCallback(() => setTick((t) => t + 1), []);

  useEffect(() => {
    alive.current = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        const got = await load();
        if (!alive.current) return;
        setData(got);
        setError(null);
        setAt(Date.now());
      } catch (exc) {
        if (!alive.current) return;
        setError(exc instanceof ApiError ? exc : new ApiError(0, String(exc)));
      } finally {
        if (alive.current) {
          setLoading(false);
          if (intervalMs) timer = setTimeout(run, intervalMs);
        }
      }
    };
    setLoading(true);
    void run();
    return () => {
      alive.current = false;
      if (timer) clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick, intervalMs]);

  return { data, error, loading, reload, at };
}

export function useApi<T>(load: () => Promise<T>, deps: unknown[] = []): Loaded<T> {
  return usePoll(load, null, deps);
}
