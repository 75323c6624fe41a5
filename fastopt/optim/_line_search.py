"""The strong-Wolfe line search of ``LBFGS`` (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Alg. 3.5
bracketing and Alg. 3.6 zoom, with cubic interpolation, eq. 3.59), taking the same decisions as torch.optim's.

A point of the search is ``(t, f, g, gtd)``: step length, loss, flat gradient, directional derivative g.d.
``evaluate(t)`` returns ``(loss, flat gradient)`` at x + t d and leaves the params at x.
"""
import numpy as np


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimiser of the cubic through (x1, f1) and (x2, f2) with slopes g1, g2, clamped to ``bounds`` (default:
    [min(x1, x2), max(x1, x2)]); the bounds' midpoint when the cubic has no minimiser. Non-finite losses give
    NaN here without a warning, as in torch."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return _cubic_minimum(x1, f1, g1, x2, f2, g2, bounds)


def _cubic_minimum(x1, f1, g1, x2, f2, g2, bounds):
    low, high = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if not d2_square >= 0:
        return (low + high) / 2.0
    d2 = np.sqrt(d2_square)
    if x1 <= x2:
        minimum = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        minimum = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(minimum, low), high)


def _bracket(evaluate, t, d, start, c1, c2, max_ls):
    """Alg. 3.5: grows t until [previous, t] brackets a strong-Wolfe point, or t is one. Returns (bracket: a list
    of 1 point (done) or 2, done, iterations, evaluations)."""
    f0, gtd0 = start[1], start[3]
    f_new, g_new = evaluate(t)
    new = (t, f_new, g_new, g_new.dot(d))
    previous, iterations = start, 0
    while iterations < max_ls:
        if new[1] > f0 + c1 * t * gtd0 or (iterations > 1 and new[1] >= previous[1]):
            return [previous, new], False, iterations, iterations + 1
        if abs(new[3]) <= -c2 * gtd0:
            return [new], True, iterations, iterations + 1
        if new[3] >= 0:
            return [previous, new], False, iterations, iterations + 1
        t = cubic_interpolate(previous[0], previous[1], previous[3], t, new[1], new[3],
                              bounds=(t + 0.01 * (t - previous[0]), t * 10))
        previous = new
        f_new, g_new = evaluate(t)
        new = (t, f_new, g_new, g_new.dot(d))
        iterations += 1
    return [start, new], False, iterations, iterations + 1


def _away_from_ends(t, ends, insufficient):
    """(t, insufficient progress): t moved to 10% of the bracket's length inside it when it falls that close to
    an end twice in a row, or on or past an end."""
    low, high = min(ends), max(ends)
    margin = 0.1 * (high - low)
    if not min(high - t, t - low) < margin:              # written so, a NaN t counts as far from the ends
        return t, False
    if insufficient or t >= high or t <= low:
        return (high - margin if abs(t - high) < abs(t - low) else low + margin), False
    return t, True


def strong_wolfe(evaluate, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """(loss, flat gradient, step length, evaluations) at a point satisfying the strong Wolfe conditions along
    ``d`` from the point with loss ``f``, gradient ``g`` and slope ``gtd`` < 0, starting from step ``t``, in at most
    ``max_ls`` iterations after the first evaluation (then: the best point found)."""
    bracket, done, iterations, evaluations = _bracket(evaluate, t, d, (0, f, g, gtd), c1, c2, max_ls)
    d_norm = np.abs(d).max()
    # one point (done): it is the result, even with a NaN loss (where torch indexes past its one-point bracket)
    low, high = (0, 1) if len(bracket) == 1 or bracket[0][1] <= bracket[-1][1] else (1, 0)
    insufficient = False
    while not done and iterations < max_ls:
        if abs(bracket[1][0] - bracket[0][0]) * d_norm < tolerance_change:
            break
        (ta, fa, _, gtda), (tb, fb, _, gtdb) = bracket
        t, insufficient = _away_from_ends(cubic_interpolate(ta, fa, gtda, tb, fb, gtdb), (ta, tb), insufficient)
        f_new, g_new = evaluate(t)
        new = (t, f_new, g_new, g_new.dot(d))
        evaluations += 1
        iterations += 1
        if f_new > f + c1 * t * gtd or f_new >= bracket[low][1]:
            bracket[high] = new                          # not sufficient decrease, or not the lowest point
            low, high = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
            continue
        if abs(new[3]) <= -c2 * gtd:
            done = True
        elif new[3] * (bracket[high][0] - bracket[low][0]) >= 0:
            bracket[high] = bracket[low]
        bracket[low] = new
    t, f_new, g_new, _ = bracket[low]
    return f_new, g_new, t, evaluations
