import { useCallback, useState } from 'react';

/** A string kept in localStorage under `key` (in memory only where storage is unavailable). */
export function useStoredString(key: string, fallback = ''): [string, (value: string) => void] {
  const [value, setValue] = useState(() => {
    try {
      return localStorage.getItem(key) ?? fallback;
    } catch {
      return fallback;
    }
  });
  const store = useCallback(
    (next: string) => {
      setValue(next);
      try {
        localStorage.setItem(key, next);
      } catch {
        // private mode or storage disabled: keep it for this page only
      }
    },
    [key],
  );
  return [value, store];
}
